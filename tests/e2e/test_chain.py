"""Each local stack end to end, the same scenarios on both, as in test_page_browser.py.

GCP: fake-gcs-server -> Pub/Sub emulator -> functions-framework. Azure: Azurite
-> Event Grid's stand-in -> the devhost running function_app.py.
"""

from __future__ import annotations

import hashlib
import threading
import time
from dataclasses import replace
from datetime import timedelta

import pytest

from core.clouds import pubsub
from core.clouds.azure_blob import AzureBlobObjectStore
from core.clouds.azure_queue import AzureQueueTaskQueue
from core.errors import NotFound
from core.imaging import grayscale
from core.jobs import Job, JsonJobStore, Status, job_id_for, utcnow
from devstack.azure import AzureStack
from devstack.environment import environment
from devstack.gcp import JOBS_TOPIC, MAX_DELIVERY_ATTEMPTS, GcpStack
from functions_azure.settings import JOBS_QUEUE, MAX_DEQUEUE_COUNT
from tests.helper import decode, encode, hopper, http_json, upload_event, wait_for_job

pytestmark = [pytest.mark.e2e, pytest.mark.emulator]
STACKS = [pytest.param("gcp_stack", marks=pytest.mark.pubsub), "azure_stack"]
Stack = GcpStack | AzureStack


def photo(stack: Stack, seed: int) -> bytes:
    """A photo of its own for each stack and test (the stacks keep their data for the session)."""
    return encode(hopper().rotate(seed + (40 if isinstance(stack, AzureStack) else 0)), "JPEG", quality=90)


def job_message(stack: Stack, job_id: str) -> None:
    if isinstance(stack, GcpStack):
        pubsub.PubSubTaskQueue(JOBS_TOPIC).send({"job_id": job_id})
    else:
        AzureQueueTaskQueue(JOBS_QUEUE).send({"job_id": job_id})


@pytest.fixture(params=STACKS)
def stack(request: pytest.FixtureRequest) -> Stack:
    return request.getfixturevalue(request.param)  # type: ignore[no-any-return]


def test_an_upload_to_storage_is_done_within_seconds_with_the_right_pixels(stack: Stack) -> None:
    store, data = stack.store(), photo(stack, 1)
    started = time.monotonic()
    store.put("uploads/chain one.jpg", data, content_type="image/jpeg")
    job = wait_for_job(stack.api_url, job_id_for("uploads/chain one.jpg", hashlib.md5(data).hexdigest()))
    assert time.monotonic() - started < 10
    assert (job["status"], job["result"], job["attempts"]) == ("DONE", "results/chain one.jpg", 1)
    result = store.get("results/chain one.jpg")
    assert result.info.content_type == "image/jpeg"
    assert decode(result.data).tobytes() == decode(grayscale(data).data).tobytes()


def test_an_upload_through_the_api_is_done(stack: Stack) -> None:
    status, job = http_json("POST", f"{stack.api_url}/jobs", photo(stack, 2), {"Content-Type": "image/jpeg"})
    assert status == 202
    assert wait_for_job(stack.api_url, job["id"])["status"] == "DONE"
    assert http_json("GET", f"{stack.api_url}/jobs/{job['id']}")[0] == 200


def test_duplicate_events_during_the_first_delivery_give_one_job_and_one_result(stack: Stack) -> None:
    store, data, key = stack.store(), photo(stack, 3), "uploads/thrice.jpg"
    info = store.put(key, data)  # the platform's own event goes out now
    # Three more, at once, while the first is being handled: not after DONE, when they could not matter.
    senders = [threading.Thread(target=upload_event, args=(stack, key, info)) for _ in range(3)]
    for sender in senders:
        sender.start()
    for sender in senders:
        sender.join()
    job_id = job_id_for(key, hashlib.md5(data).hexdigest())
    job = wait_for_job(stack.api_url, job_id)
    time.sleep(2)  # any duplicate message still in flight lands
    job = wait_for_job(stack.api_url, job_id)
    assert (job["status"], job["attempts"]) == ("DONE", 1)
    assert [i.key for i in store.list("results/thrice")] == ["results/thrice.jpg"]
    assert [i.key for i in store.list("jobs/") if i.key == f"jobs/{job_id}.json"] == [f"jobs/{job_id}.json"]


def test_a_bad_image_fails_with_a_reason_and_is_not_redelivered(stack: Stack) -> None:
    store, data = stack.store(), photo(stack, 4)[:500]
    store.put("uploads/broken.jpg", data, content_type="image/jpeg")
    job_id = job_id_for("uploads/broken.jpg", hashlib.md5(data).hexdigest())
    job = wait_for_job(stack.api_url, job_id)
    assert job["status"] == "FAILED" and "truncated" in job["error"]
    time.sleep(3)  # longer than the first retry back-off of either cloud
    _, again = http_json("GET", f"{stack.api_url}/jobs/{job_id}")
    assert (again["status"], again["attempts"]) == ("FAILED", 1)
    assert list(store.list("results/broken")) == []


def test_a_message_that_always_fails_is_dead_lettered_and_the_job_fails(stack: Stack) -> None:
    # A job held by a worker whose lease never runs out: every delivery is Busy (a 500).
    jobs = JsonJobStore(stack.store())
    stuck = Job.new(("deadbeef" if isinstance(stack, GcpStack) else "feedface") * 4, "uploads/held.jpg", "image/jpeg")
    jobs.create(replace(stuck, status=Status.PROCESSING, attempts=1, updated=utcnow() + timedelta(days=1)))
    job_message(stack, stuck.id)
    job = wait_for_job(stack.api_url, stuck.id, until=("FAILED",), timeout=90)
    attempts = MAX_DELIVERY_ATTEMPTS if isinstance(stack, GcpStack) else MAX_DEQUEUE_COUNT
    assert job["error"] == f"gave up after {attempts} attempts"


def test_an_object_under_results_triggers_nothing(stack: Stack) -> None:
    store, data = stack.store(), photo(stack, 5)
    store.put("results/planted.jpg", data, content_type="image/jpeg")
    time.sleep(2)
    with pytest.raises(NotFound):
        JsonJobStore(store).get(job_id_for("results/planted.jpg", hashlib.md5(data).hexdigest()))
    assert [i.key for i in store.list("results/planted")] == ["results/planted.jpg"]


# One cloud only ----------------------------------------------------------------------------------


def test_blob_created_reaches_on_upload_through_the_webhook_and_nothing_polls(azure_stack: AzureStack) -> None:
    """A blob committed straight to Azurite, past Event Grid, is never noticed (no listing poll); the
    BlobCreated event that Event Grid would post, sent by hand to the blobs webhook, makes its job."""
    assert azure_stack.azurite is not None
    data, key = photo(azure_stack, 7), "uploads/past event grid.jpg"
    with environment({"AZURE_STORAGE_CONNECTION_STRING": azure_stack.azurite.connection_string}):
        info = AzureBlobObjectStore(azure_stack.container).put(key, data, content_type="image/jpeg")
    job_id = job_id_for(key, hashlib.md5(data).hexdigest())
    time.sleep(1.5)
    assert http_json("GET", f"{azure_stack.api_url}/jobs/{job_id}")[0] == 404, "no event, no job: nothing polls"
    upload_event(azure_stack, key, info)
    assert wait_for_job(azure_stack.api_url, job_id)["status"] == "DONE"


def test_without_pubsub_the_gcp_api_processes_in_process() -> None:  # needs no Pub/Sub emulator
    """The fallback of `make dev` / `make demo` where the Pub/Sub emulator is absent."""
    import os

    saved = dict(os.environ)
    try:
        with GcpStack(use_pubsub=False) as stack:
            assert stack.pubsub is None and "in-process" in stack.note
            assert set(stack.functions) == {"api", "migrations"}  # the HTTP functions; no event function
            os.environ.update(stack.env())
            status, job = http_json("POST", f"{stack.api_url}/jobs", photo(stack, 6), {"Content-Type": "image/jpeg"})
            assert status == 202
            assert wait_for_job(stack.api_url, job["id"])["status"] == "DONE"
    finally:
        os.environ.clear()
        os.environ.update(saved)
