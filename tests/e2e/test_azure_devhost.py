"""The local Azure stack end to end: Azurite, the devhost, function_app.py."""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import replace
from datetime import timedelta

import pytest

from core.clouds.azure_blob import AzureBlobObjectStore
from core.clouds.azure_queue import AzureQueueTaskQueue
from core.errors import NotFound
from core.jobs import Job, JsonJobStore, Status, job_id_for, utcnow
from devstack.azure import AzureStack
from devstack.environment import environment
from functions_azure.settings import JOBS_QUEUE, MAX_DEQUEUE_COUNT
from tests.e2e.conftest import http_json, wait_for_job
from tests.helper import decode, encode, hopper

pytestmark = [pytest.mark.e2e, pytest.mark.emulator]


def photo(seed: int) -> bytes:
    return encode(hopper().rotate(seed + 40), "JPEG", quality=90)


def test_an_upload_to_the_container_is_done_within_seconds(azure_stack: AzureStack) -> None:
    store, data = azure_stack.store(), photo(1)
    started = time.monotonic()
    store.put("uploads/chain one.jpg", data, content_type="image/jpeg")
    job = wait_for_job(azure_stack.api_url, job_id_for("uploads/chain one.jpg", hashlib.md5(data).hexdigest()))
    assert time.monotonic() - started < 10
    assert (job["status"], job["result"], job["attempts"]) == ("DONE", "results/chain one.jpg", 1)
    assert decode(store.get("results/chain one.jpg").data).mode == "L"


def test_an_upload_through_the_api_is_done(azure_stack: AzureStack) -> None:
    status, job = http_json("POST", f"{azure_stack.api_url}/jobs", photo(2), {"Content-Type": "image/jpeg"})
    assert status == 202
    assert wait_for_job(azure_stack.api_url, job["id"])["status"] == "DONE"


def test_a_duplicate_event_gives_one_result(azure_stack: AzureStack) -> None:
    store, data = azure_stack.store(), photo(3)
    key = "uploads/twice.jpg"
    store.put(key, data)
    job_id = job_id_for(key, hashlib.md5(data).hexdigest())
    wait_for_job(azure_stack.api_url, job_id)
    store.put(key, data)  # the same bytes again: a second BlobCreated event for the same upload
    time.sleep(2)
    job = wait_for_job(azure_stack.api_url, job_id)
    assert (job["status"], job["attempts"]) == ("DONE", 1)
    assert [i.key for i in store.list("results/twice")] == ["results/twice.jpg"]


def test_a_bad_image_fails_with_a_reason(azure_stack: AzureStack) -> None:
    store, data = azure_stack.store(), photo(4)[:400]
    store.put("uploads/broken.jpg", data)
    job_id = job_id_for("uploads/broken.jpg", hashlib.md5(data).hexdigest())
    job = wait_for_job(azure_stack.api_url, job_id)
    assert job["status"] == "FAILED" and "truncated" in job["error"]
    time.sleep(2)
    assert http_json("GET", f"{azure_stack.api_url}/jobs/{job_id}")[1]["attempts"] == 1


def test_an_always_failing_message_goes_to_the_poison_queue_and_the_job_fails(azure_stack: AzureStack) -> None:
    jobs = JsonJobStore(azure_stack.store())
    stuck = Job.new("feedface" * 4, "uploads/held.jpg", "image/jpeg")
    jobs.create(replace(stuck, status=Status.PROCESSING, attempts=1, updated=utcnow() + timedelta(days=1)))
    AzureQueueTaskQueue(JOBS_QUEUE).send({"job_id": stuck.id})
    job = wait_for_job(azure_stack.api_url, stuck.id, until=("FAILED",), timeout=60)
    assert job["error"] == f"gave up after {MAX_DEQUEUE_COUNT} attempts"


def test_results_trigger_nothing(azure_stack: AzureStack) -> None:
    store, data = azure_stack.store(), photo(5)
    store.put("results/planted.jpg", data)
    time.sleep(2)
    with pytest.raises(NotFound):
        JsonJobStore(store).get(job_id_for("results/planted.jpg", hashlib.md5(data).hexdigest()))


def test_blob_created_reaches_on_upload_through_the_webhook_and_nothing_polls(azure_stack: AzureStack) -> None:
    """A blob committed straight to Azurite, past Event Grid, is never noticed (no listing poll); the
    BlobCreated event that Event Grid would post, sent by hand to the blobs webhook, makes its job."""
    assert azure_stack.azurite is not None and azure_stack.devhost is not None
    data, key = photo(7), "uploads/past event grid.jpg"
    with environment({"AZURE_STORAGE_CONNECTION_STRING": azure_stack.azurite.connection_string}):
        AzureBlobObjectStore(azure_stack.container).put(key, data, content_type="image/jpeg")
    job_id = job_id_for(key, hashlib.md5(data).hexdigest())
    time.sleep(1.5)
    assert http_json("GET", f"{azure_stack.api_url}/jobs/{job_id}")[0] == 404, "no event, no job: nothing polls"
    event = [{
        "id": "by-hand", "eventType": "Microsoft.Storage.BlobCreated", "eventTime": "2026-11-27T00:00:00Z",
        "subject": f"/blobServices/default/containers/{azure_stack.container}/blobs/{key}",
        "topic": "/subscriptions/x/resourceGroups/x/providers/Microsoft.Storage/storageAccounts/devstoreaccount1",
        "data": {"api": "PutBlob", "blobType": "BlockBlob"}, "dataVersion": "", "metadataVersion": "1",
    }]  # fmt: skip
    webhook = (
        f"http://127.0.0.1:{azure_stack.devhost.port}/runtime/webhooks/blobs?functionName=Host.Functions.on_upload"
    )
    status, _ = http_json("POST", webhook, json.dumps(event).encode(), {"aeg-event-type": "Notification"})
    assert status == 200
    assert wait_for_job(azure_stack.api_url, job_id)["status"] == "DONE"
