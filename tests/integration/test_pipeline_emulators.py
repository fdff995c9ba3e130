"""The pipeline use cases end to end over each cloud's real store and real queue, on the emulators."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from core.clouds.azure_queue import AzureQueueTaskQueue
from core.clouds.pubsub import PubSubTaskQueue
from core.imaging import grayscale
from core.jobs import Status
from core.pipeline import Services, accept_upload, parse_job_message, process_job, submit_upload
from core.ports import ObjectStore, TaskQueue
from tests.helper import decode as decode_image
from tests.helper import encode, hopper, unique_name
from tests.integration.test_queues import make_topic, pull

pytestmark = pytest.mark.emulator

JPEG = encode(hopper(), "JPEG", quality=90)
RGBA_PNG = encode(hopper("RGBA"), "PNG")


@dataclass
class Cloud:
    """One cloud's real store and real queue, and a consumer of that queue."""

    store: ObjectStore
    queue: TaskQueue
    take: Callable[[float], list[Any]]
    """The payloads delivered within ``timeout`` seconds (at least one, if any comes)."""

    def services(self) -> Services:
        return Services.over(self.store, self.queue)

    def message(self) -> str:
        """The job id of the one message the use case sent."""
        (payload,) = self.take(20)
        return parse_job_message(payload)


@pytest.fixture(params=[pytest.param("gcp", marks=pytest.mark.pubsub), "azure"])
def cloud(request: pytest.FixtureRequest) -> Cloud:
    if request.param == "gcp":
        request.getfixturevalue("pubsub_env")
        topic, subscription = make_topic()
        return Cloud(
            request.getfixturevalue("gcs_store"),
            PubSubTaskQueue(topic),
            lambda timeout: [json.loads(m.message.data) for m in pull(subscription, timeout=timeout)],
        )
    queue = AzureQueueTaskQueue(unique_name("jobs"))

    def take(timeout: float) -> list[Any]:
        messages = queue.receive(max_messages=32, visibility_timeout=30)
        for message in messages:
            queue.delete(message)
        return [message.payload for message in messages]

    return Cloud(request.getfixturevalue("azure_store"), queue, take)


@pytest.mark.parametrize("name", ["cat.jpg", "with space #1?.jpg", "ünïcødé 100%.jpg"])
def test_upload_to_result(cloud: Cloud, name: str) -> None:
    services = cloud.services()
    job = submit_upload(services, JPEG, filename=name)
    done = process_job(services, cloud.message())
    assert done.id == job.id and done.status is Status.DONE
    result = cloud.store.get(done.result or "")
    assert result.info.content_type == "image/jpeg"
    assert decode_image(result.data).tobytes() == decode_image(grayscale(JPEG).data).tobytes()
    assert dict(result.info.metadata) == {"job_id": job.id, "source": job.source}
    assert services.jobs.get(job.id).status is Status.DONE


def test_bucket_upload_event_to_result(cloud: Cloud) -> None:
    services = cloud.services()
    cloud.store.put("uploads/direct.png", RGBA_PNG, content_type="image/png")
    job = accept_upload(services, "uploads/direct.png")
    assert job is not None
    done = process_job(services, cloud.message())
    assert done.id == job.id and done.result == "results/direct.png"
    assert decode_image(cloud.store.get("results/direct.png").data).mode == "LA"
    assert accept_upload(services, "results/direct.png") is None
    assert cloud.take(2) == []  # a result is no upload: no message


def test_a_corrupt_upload_fails_cleanly(cloud: Cloud) -> None:
    services = cloud.services()
    cloud.store.put("uploads/broken.jpg", JPEG[:300], content_type="image/jpeg")
    job = accept_upload(services, "uploads/broken.jpg")
    assert job is not None
    failed = process_job(services, cloud.message())
    assert failed.id == job.id and failed.status is Status.FAILED
    assert "truncated" in (failed.error or "")
    assert [i.key for i in cloud.store.list("results/")] == []
