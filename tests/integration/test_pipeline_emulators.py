"""The pipeline use cases end to end over the real adapters and emulators."""

from __future__ import annotations

import json

import pytest

from core.clouds.azure_blob import AzureBlobObjectStore
from core.clouds.azure_queue import AzureQueueTaskQueue, decode
from core.clouds.gcs import GcsObjectStore
from core.clouds.pubsub import PubSubTaskQueue
from core.jobs import Status
from core.memory import InMemoryTaskQueue
from core.pipeline import Services, accept_upload, parse_job_message, process_job, submit_upload
from core.ports import ObjectStore
from devstack.emulators import PubSubEmulator
from tests.helper import decode as decode_image
from tests.helper import encode, hopper, unique_name
from tests.integration.test_queues import make_topic, pull

pytestmark = pytest.mark.emulator

JPEG = encode(hopper(), "JPEG", quality=90)
RGBA_PNG = encode(hopper("RGBA"), "PNG")


@pytest.fixture(params=["gcs", "azure"])
def store(request: pytest.FixtureRequest) -> ObjectStore:
    return request.getfixturevalue(f"{request.param}_store")  # type: ignore[no-any-return]


@pytest.mark.parametrize("name", ["cat.jpg", "with space #1?.jpg", "ünïcødé 100%.jpg"])
def test_upload_to_result_on_a_real_store(store: ObjectStore, name: str) -> None:
    services = Services.over(store, InMemoryTaskQueue())
    job = submit_upload(services, JPEG, filename=name)
    (message,) = services.queue.drain()  # type: ignore[attr-defined]
    done = process_job(services, parse_job_message(message))
    assert done.status is Status.DONE
    result = store.get(done.result or "")
    assert result.info.content_type == "image/jpeg"
    assert decode_image(result.data).mode == "L"
    assert dict(result.info.metadata) == {"job_id": job.id, "source": job.source}
    assert services.jobs.get(job.id).status is Status.DONE


def test_bucket_upload_event_to_result(store: ObjectStore) -> None:
    services = Services.over(store, InMemoryTaskQueue())
    store.put("uploads/direct.png", RGBA_PNG, content_type="image/png")
    job = accept_upload(services, "uploads/direct.png")
    assert job is not None
    done = process_job(services, job.id)
    assert done.result == "results/direct.png"
    assert decode_image(store.get("results/direct.png").data).mode == "LA"
    assert accept_upload(services, "results/direct.png") is None


def test_a_corrupt_upload_fails_cleanly_on_a_real_store(store: ObjectStore) -> None:
    services = Services.over(store, InMemoryTaskQueue())
    store.put("uploads/broken.jpg", JPEG[:300], content_type="image/jpeg")
    job = accept_upload(services, "uploads/broken.jpg")
    assert job is not None
    failed = process_job(services, job.id)
    assert failed.status is Status.FAILED
    assert "truncated" in (failed.error or "")
    assert [i.key for i in store.list("results/")] == []


def test_azure_pipeline_over_a_real_queue(azure_store: AzureBlobObjectStore) -> None:
    queue = AzureQueueTaskQueue(unique_name("jobs"))
    services = Services.over(azure_store, queue)
    job = submit_upload(services, JPEG, filename="q.jpg")
    (message,) = queue.client.receive_messages()
    assert process_job(services, parse_job_message(decode(message.content))).status is Status.DONE
    assert services.jobs.get(job.id).status is Status.DONE


@pytest.mark.pubsub
def test_gcp_pipeline_over_a_real_topic(gcs_store: GcsObjectStore, pubsub_env: PubSubEmulator) -> None:
    topic, subscription = make_topic()
    services = Services.over(gcs_store, PubSubTaskQueue(topic))
    job = submit_upload(services, JPEG, filename="p.jpg")
    (received,) = pull(subscription)
    assert process_job(services, parse_job_message(json.loads(received.message.data))).status is Status.DONE
    assert services.jobs.get(job.id).result == job.source.replace("uploads/", "results/")
