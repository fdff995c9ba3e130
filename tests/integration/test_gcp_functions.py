"""The GCP entry points in-process, with functions-framework's test client and
real CloudEvents (structured and binary), over the real fake-gcs-server."""

from __future__ import annotations

import base64
import hashlib
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cloudevents.conversion import to_binary, to_structured
from cloudevents.http import CloudEvent
from flask.testing import FlaskClient
from functions_framework import create_app

from core.clouds.gcs import GcsObjectStore
from core.errors import TransientError
from core.jobs import Status, job_id_for
from core.memory import InMemoryTaskQueue
from core.pipeline import Services
from functions_gcp import services as gcp_services
from functions_gcp.events import FINALIZED, PUBLISHED
from tests.helper import FailingReads, decode, encode, hopper

pytestmark = pytest.mark.emulator

ROOT = Path(__file__).resolve().parents[2]
JPEG = encode(hopper(), "JPEG", quality=90)


def client(target: str, signature: str = "cloudevent") -> FlaskClient:
    return create_app(target, str(ROOT / "main.py"), signature).test_client()


@pytest.fixture
def svc(gcs_store: GcsObjectStore) -> Iterator[Services]:
    services = Services.over(gcs_store, InMemoryTaskQueue())
    gcp_services.use(services)
    yield services
    gcp_services.use(None)


def resource(store: GcsObjectStore, key: str) -> dict[str, Any]:
    info = store.head(key)
    return {
        "bucket": store.bucket_name,
        "name": key,
        "md5Hash": base64.b64encode(bytes.fromhex(info.md5 or "")).decode(),
        "contentType": info.content_type,
        "generation": info.version,
        "size": str(info.size),
    }


def eventarc(store: GcsObjectStore, key: str) -> CloudEvent:
    return CloudEvent(
        {
            "type": FINALIZED,
            "source": f"//storage.googleapis.com/projects/_/buckets/{store.bucket_name}",
            "subject": f"objects/{key}",
        },
        resource(store, key),
    )


def pubsub_event(data: dict[str, Any], attributes: dict[str, str] | None = None) -> CloudEvent:
    message = {
        "data": base64.b64encode(json.dumps(data).encode()).decode(),
        "attributes": attributes or {},
        "messageId": "123",
        "publishTime": "2026-11-27T06:00:00Z",
    }
    return CloudEvent(
        {"type": PUBLISHED, "source": "//pubsub.googleapis.com/projects/local/topics/t"},
        {"message": message, "subscription": "projects/local/subscriptions/s"},
    )


def notification(store: GcsObjectStore, key: str, event_type: str = "OBJECT_FINALIZE") -> CloudEvent:
    attributes = {
        "eventType": event_type,
        "bucketId": store.bucket_name,
        "objectId": key,
        "payloadFormat": "JSON_API_V1",
    }
    return pubsub_event(resource(store, key), attributes)


def post(target: FlaskClient, event: CloudEvent, mode: str = "structured") -> int:
    headers, body = (to_structured if mode == "structured" else to_binary)(event)
    return target.post("/", headers=headers, data=body).status_code


def queued(svc: Services) -> list[str]:
    return [m["job_id"] for m in svc.queue.drain()]  # type: ignore[attr-defined]


# on_upload ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["structured", "binary"])
@pytest.mark.parametrize("shape", ["eventarc", "pubsub"])
def test_on_upload_accepts_both_event_shapes_in_both_modes(svc: Services, shape: str, mode: str) -> None:
    store = svc.store
    assert isinstance(store, GcsObjectStore)
    key = "uploads/odd name #1 ü.jpg"
    store.put(key, JPEG, content_type="image/jpeg")
    event = eventarc(store, key) if shape == "eventarc" else notification(store, key)
    assert post(client("on_upload"), event, mode) == 200
    expected = job_id_for(key, hashlib.md5(JPEG).hexdigest())
    assert queued(svc) == [expected]
    assert svc.jobs.get(expected).status is Status.PENDING


def test_on_upload_accepts_a_raw_pubsub_push(svc: Services) -> None:
    """What a push subscription (and the local emulator) sends: no CloudEvent headers at all."""
    store = svc.store
    assert isinstance(store, GcsObjectStore)
    store.put("uploads/raw.jpg", JPEG)
    body = notification(store, "uploads/raw.jpg").data
    response = client("on_upload").post("/projects/local/topics/gcs", json=body)
    assert response.status_code == 200
    assert len(queued(svc)) == 1


def test_a_notification_delivered_three_times_is_one_job(svc: Services) -> None:
    store = svc.store
    assert isinstance(store, GcsObjectStore)
    store.put("uploads/dup.jpg", JPEG)
    target = client("on_upload")
    for _ in range(3):
        assert post(target, notification(store, "uploads/dup.jpg")) == 200
    # One job; its message sent again while it is PENDING (a crash may have come between record and message).
    job_id = job_id_for("uploads/dup.jpg", hashlib.md5(JPEG).hexdigest())
    assert queued(svc) == [job_id] * 3
    renders = []
    render = svc.render
    svc.render = lambda data: (renders.append(1), render(data))[1]  # type: ignore[method-assign]
    process = client("process_job")
    assert [post(process, pubsub_event({"job_id": job_id})) for _ in range(3)] == [200, 200, 200]
    assert len(renders) == 1 and svc.jobs.get(job_id).attempts == 1
    assert [i.key for i in store.list("jobs/")] == [f"jobs/{job_id}.json"]


def test_a_job_message_delivered_again_while_it_renders_renders_once(svc: Services) -> None:
    """Duplicates that overlap the first delivery (answered 500 Busy: Pub/Sub delivers them again) and duplicates
    after DONE (acknowledged): one render, one result, one job record."""
    store, job_id = accepted(svc, "uploads/overlap.jpg", JPEG)
    rendering, rendered = threading.Event(), threading.Event()
    renders = []
    render = svc.render

    def slow(data: bytes) -> Any:
        rendering.set()
        time.sleep(0.5)
        renders.append(1)
        try:
            return render(data)
        finally:
            rendered.set()

    svc.render = slow  # type: ignore[method-assign]
    process = client("process_job")
    first: list[int] = []
    worker = threading.Thread(target=lambda: first.append(post(process, pubsub_event({"job_id": job_id}))))
    worker.start()
    assert rendering.wait(10)
    during = [post(client("process_job"), pubsub_event({"job_id": job_id})) for _ in range(2)]
    overlapped = not rendered.is_set()  # both answered while the first was still rendering
    worker.join()
    assert overlapped and during == [500, 500] and first == [200]
    after = [post(process, pubsub_event({"job_id": job_id})) for _ in range(3)]  # the redeliveries, after DONE
    assert after == [200, 200, 200] and len(renders) == 1
    assert svc.jobs.get(job_id).status is Status.DONE and svc.jobs.get(job_id).attempts == 1
    assert [i.key for i in store.list("jobs/")] == [f"jobs/{job_id}.json"]
    assert [i.key for i in store.list("results/")] == ["results/overlap.jpg"]


@pytest.mark.parametrize("key", ["results/x.jpg", "jobs/x.json", "uploads/"])
def test_on_upload_ignores_keys_outside_uploads(svc: Services, key: str) -> None:
    store = svc.store
    assert isinstance(store, GcsObjectStore)
    store.put(key, JPEG)
    assert post(client("on_upload"), notification(store, key)) == 200
    assert queued(svc) == []
    assert [i.key for i in store.list("jobs/")] == ([key] if key.startswith("jobs/") else [])


def test_on_upload_ignores_other_notification_types(svc: Services) -> None:
    store = svc.store
    assert isinstance(store, GcsObjectStore)
    store.put("uploads/a.jpg", JPEG)
    assert post(client("on_upload"), notification(store, "uploads/a.jpg", "OBJECT_DELETE")) == 200
    assert queued(svc) == []


@pytest.mark.parametrize(
    "data",
    [{"message": "nope"}, {"message": {"data": "!!not base64!!", "attributes": {"eventType": "OBJECT_FINALIZE"}}}, {}],
    ids=["no-message", "bad-base64", "empty"],
)
def test_malformed_events_are_acknowledged_not_retried(
    svc: Services, data: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    """Acknowledged (200, so Pub/Sub does not retry what can never work) on the drop path, which says so in the log;
    and nothing is queued although an upload waits in the bucket."""
    svc.store.put("uploads/waiting.jpg", JPEG)
    event = CloudEvent({"type": PUBLISHED, "source": "//pubsub.googleapis.com/x"}, data)
    with caplog.at_level("WARNING"):
        assert post(client("on_upload"), event) == 200
        assert post(client("process_job"), event) == 200
    dropped = [r.getMessage() for r in caplog.records if r.levelname in ("WARNING", "ERROR")]
    assert any("ignored a malformed storage event" in m for m in dropped), dropped  # on_upload
    assert any("dropped a malformed job message" in m for m in dropped), dropped  # process_job
    assert queued(svc) == []


def test_a_request_that_is_no_event_at_all_is_a_client_error(svc: Services) -> None:
    target = client("on_upload")
    assert target.post("/", data=b"hello", headers={"Content-Type": "text/plain"}).status_code == 415
    assert target.post("/", json={"what": "ever"}).status_code == 400
    assert queued(svc) == []


# process_job and on_dead_letter ------------------------------------------------------------------


def accepted(svc: Services, key: str, data: bytes) -> tuple[GcsObjectStore, str]:
    """An upload written to the bucket and accepted by on_upload: the store and its job id."""
    store = svc.store
    assert isinstance(store, GcsObjectStore)
    store.put(key, data)
    post(client("on_upload"), eventarc(store, key))
    (job_id,) = queued(svc)
    return store, job_id


def test_process_job_renders_the_result(svc: Services) -> None:
    store, job_id = accepted(svc, "uploads/p.jpg", JPEG)
    assert post(client("process_job"), pubsub_event({"job_id": job_id}), "binary") == 200
    assert svc.jobs.get(job_id).status is Status.DONE
    assert decode(store.get("results/p.jpg").data).mode == "L"


def test_a_bad_image_fails_once_and_is_acknowledged(svc: Services) -> None:
    store, job_id = accepted(svc, "uploads/bad.jpg", b"GIF89a but not really")
    assert post(client("process_job"), pubsub_event({"job_id": job_id})) == 200
    job = svc.jobs.get(job_id)
    assert (job.status, job.attempts) == (Status.FAILED, 1)
    assert job.error
    assert list(store.list("results/")) == []


def test_an_unknown_job_is_acknowledged(svc: Services) -> None:
    assert post(client("process_job"), pubsub_event({"job_id": "0" * 32})) == 200


def test_a_transient_failure_is_a_500_so_pubsub_redelivers() -> None:
    gcp_services.use(Services.over(FailingReads(TransientError("injected outage")), InMemoryTaskQueue()))
    try:
        assert post(client("process_job"), pubsub_event({"job_id": "a" * 32})) == 500
    finally:
        gcp_services.use(None)


def test_dead_letter_marks_the_job_failed_with_the_attempts(svc: Services) -> None:
    _, job_id = accepted(svc, "uploads/d.jpg", JPEG)
    dead = pubsub_event({"job_id": job_id}, {"CloudPubSubDeadLetterSourceDeliveryCount": "5"})
    assert post(client("on_dead_letter"), dead) == 200
    job = svc.jobs.get(job_id)
    assert (job.status, job.error) == (Status.FAILED, "gave up after 5 attempts")


# api ---------------------------------------------------------------------------------------------


def test_api_upload_status_and_result(svc: Services) -> None:
    api = client("api", "http")
    response = api.post("/jobs", data=JPEG, headers={"Content-Type": "image/jpeg"})
    assert response.status_code == 202
    job = response.get_json()
    assert response.headers["Location"].endswith(f"/jobs/{job['id']}")
    assert api.get(f"/jobs/{job['id']}").get_json()["status"] == "PENDING"
    not_done = api.get(f"/jobs/{job['id']}/result")
    assert (not_done.status_code, not_done.get_json()["status"]) == (409, "PENDING")
    (job_id,) = queued(svc)
    post(client("process_job"), pubsub_event({"job_id": job_id}))
    result = api.get(f"/jobs/{job['id']}/result")
    assert (result.status_code, result.headers["Content-Type"]) == (200, "image/jpeg")
    assert api.get("/").headers["Content-Type"].startswith("text/html")
    assert api.get("/jobs/nope").get_json()["error"] == "not_found"
