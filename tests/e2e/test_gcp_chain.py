"""The whole local GCP chain: fake-gcs-server -> Pub/Sub emulator -> functions-framework."""

from __future__ import annotations

import base64
import hashlib
import json
import time
from dataclasses import replace
from datetime import timedelta

import pytest

from core.clouds import pubsub
from core.errors import NotFound
from core.jobs import Job, JsonJobStore, Status, job_id_for, utcnow
from devstack.gcp import JOBS_TOPIC, MAX_DELIVERY_ATTEMPTS, NOTIFICATIONS_TOPIC, GcpStack
from tests.e2e.conftest import http_json, wait_for_job
from tests.helper import decode, encode, hopper

pytestmark = [pytest.mark.e2e, pytest.mark.emulator, pytest.mark.pubsub]


def photo(seed: int) -> bytes:
    return encode(hopper().rotate(seed), "JPEG", quality=90)


def test_an_upload_to_the_bucket_is_done_within_seconds(gcp_stack: GcpStack) -> None:
    store, data = gcp_stack.store(), photo(1)
    started = time.monotonic()
    store.put("uploads/chain one.jpg", data, content_type="image/jpeg")
    job = wait_for_job(gcp_stack.api_url, job_id_for("uploads/chain one.jpg", hashlib.md5(data).hexdigest()))
    assert time.monotonic() - started < 10
    assert (job["status"], job["result"], job["attempts"]) == ("DONE", "results/chain one.jpg", 1)
    assert decode(store.get("results/chain one.jpg").data).mode == "L"


def test_an_upload_through_the_api_is_done(gcp_stack: GcpStack) -> None:
    status, job = http_json("POST", f"{gcp_stack.api_url}/jobs", photo(2), {"Content-Type": "image/jpeg"})
    assert status == 202
    done = wait_for_job(gcp_stack.api_url, job["id"])
    assert done["status"] == "DONE"
    status, _ = http_json("GET", f"{gcp_stack.api_url}/jobs/{job['id']}")
    assert status == 200


def test_a_notification_delivered_three_times_gives_one_result(gcp_stack: GcpStack) -> None:
    store, data = gcp_stack.store(), photo(3)
    key = "uploads/thrice.jpg"
    info = store.put(key, data)
    job_id = job_id_for(key, hashlib.md5(data).hexdigest())
    wait_for_job(gcp_stack.api_url, job_id)
    resource = {
        "bucket": gcp_stack.bucket,
        "name": key,
        "md5Hash": base64.b64encode(bytes.fromhex(info.md5 or "")).decode(),
    }
    attributes = {"eventType": "OBJECT_FINALIZE", "bucketId": gcp_stack.bucket, "objectId": key}
    for _ in range(3):
        pubsub.publish_raw(NOTIFICATIONS_TOPIC, json.dumps(resource).encode(), attributes)
    time.sleep(2)
    job = wait_for_job(gcp_stack.api_url, job_id)
    assert (job["status"], job["attempts"]) == ("DONE", 1)
    assert [i.key for i in store.list("results/thrice")] == ["results/thrice.jpg"]
    assert sum(1 for i in store.list("jobs/") if i.key == f"jobs/{job_id}.json") == 1


def test_a_bad_image_fails_with_a_reason_and_is_not_redelivered(gcp_stack: GcpStack) -> None:
    store = gcp_stack.store()
    data = photo(4)[:500]
    store.put("uploads/broken.jpg", data, content_type="image/jpeg")
    job_id = job_id_for("uploads/broken.jpg", hashlib.md5(data).hexdigest())
    job = wait_for_job(gcp_stack.api_url, job_id)
    assert job["status"] == "FAILED"
    assert "truncated" in job["error"]
    time.sleep(3)  # longer than the subscription's first retry backoff
    _, again = http_json("GET", f"{gcp_stack.api_url}/jobs/{job_id}")
    assert (again["status"], again["attempts"]) == ("FAILED", 1)
    assert list(store.list("results/broken")) == []


def test_a_message_that_always_fails_is_dead_lettered_and_the_job_fails(gcp_stack: GcpStack) -> None:
    # A job held by a worker whose lease never runs out: every delivery is Busy (a 500).
    jobs = JsonJobStore(gcp_stack.store())
    stuck = Job.new("deadbeef" * 4, "uploads/held.jpg", "image/jpeg")
    stuck = replace(stuck, status=Status.PROCESSING, attempts=1, updated=utcnow() + timedelta(days=1))
    jobs.create(stuck)
    pubsub.PubSubTaskQueue(JOBS_TOPIC).send({"job_id": stuck.id})
    job = wait_for_job(gcp_stack.api_url, stuck.id, until=("FAILED",), timeout=90)
    assert job["error"] == f"gave up after {MAX_DELIVERY_ATTEMPTS} attempts"


def test_an_object_under_results_triggers_nothing(gcp_stack: GcpStack) -> None:
    store, data = gcp_stack.store(), photo(5)
    store.put("results/planted.jpg", data, content_type="image/jpeg")
    time.sleep(2)
    with pytest.raises(NotFound):
        JsonJobStore(store).get(job_id_for("results/planted.jpg", hashlib.md5(data).hexdigest()))
    assert [i.key for i in store.list("results/planted")] == ["results/planted.jpg"]


@pytest.mark.e2e
def test_without_pubsub_the_api_processes_in_process() -> None:
    """The fallback of `make dev` / `make demo` where the Pub/Sub emulator is absent."""
    import os

    saved = dict(os.environ)
    try:
        with GcpStack(use_pubsub=False) as stack:
            assert stack.pubsub is None and "in-process" in stack.note
            assert set(stack.functions) == {"api"}
            os.environ.update(stack.env())
            status, job = http_json("POST", f"{stack.api_url}/jobs", photo(6), {"Content-Type": "image/jpeg"})
            assert status == 202
            assert wait_for_job(stack.api_url, job["id"])["status"] == "DONE"
    finally:
        os.environ.clear()
        os.environ.update(saved)
