"""The Azure handlers called directly with real azure.functions objects, against Azurite."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tracemalloc
import urllib.parse
from collections.abc import Iterator
from typing import Any

import azure.functions as func
import pytest
from azure.functions.queue import QueueMessage

from core.clouds.azure_blob import AzureBlobObjectStore
from core.errors import TransientError
from core.jobs import Status, job_id_for
from core.memory import InMemoryTaskQueue
from core.pipeline import Services
from functions_azure import blueprint
from functions_azure import services as azure_services
from functions_azure.devhost import blob_argument
from functions_azure.settings import CONNECTION
from tests.helper import FailingReads, decode, encode, hopper

pytestmark = pytest.mark.emulator

JPEG = encode(hopper(), "JPEG", quality=90)


@pytest.fixture
def svc(azure_store: AzureBlobObjectStore, azure_env: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[Services]:
    monkeypatch.setenv(CONNECTION, azure_env.connection_string)  # the host's storage setting, which the binding reads
    services = Services.over(azure_store, InMemoryTaskQueue())
    azure_services.use(services)
    yield services
    azure_services.use(None)


def blob_event(store: AzureBlobObjectStore, key: str) -> Any:
    """What the worker hands on_upload for a BlobCreated event: the SDK-type client, as the devhost makes it."""
    handler = blueprint.on_upload._function.get_user_function()
    return blob_argument(handler, store, CONNECTION, store.container_name, key)


def queue_message(payload: object, dequeue_count: int = 1) -> QueueMessage:
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return QueueMessage(id="m1", body=body, dequeue_count=dequeue_count, pop_receipt="r")


def http(method: str, path: str, body: bytes = b"", **headers: str) -> func.HttpResponse:
    """As the host calls them: POST /jobs to api_upload, anything else to the catch-all with its route parameter."""
    route = {} if method == "POST" else {"path": urllib.parse.unquote(path.lstrip("/"))}
    request = func.HttpRequest(method, f"http://127.0.0.1:7071/api{path}", headers=headers, body=body,
                               route_params=route)  # fmt: skip
    handler = blueprint.api_upload if method == "POST" else blueprint.api_read
    return handler(request)


@pytest.mark.parametrize(
    "path",
    [
        "migrations",
        "migrations/x",
        "migrations%2Fx",
        "migrations%252Fx",
        "MIGRATIONS",
        "migrations/check",
        "..%2Fmigrations",
    ],
)
@pytest.mark.parametrize("method", ["GET", "HEAD", "PUT", "PATCH", "DELETE"])
def test_the_anonymous_catch_all_reaches_no_migration_route(svc: Services, method: str, path: str) -> None:
    """Whatever path the host hands it (decoded once, or twice by a careless adapter), the catch-all answers as the
    pipeline only: 404 or 405, never a run or a list of runs."""
    for route in {path, urllib.parse.unquote(path), urllib.parse.unquote(urllib.parse.unquote(path))}:
        request = func.HttpRequest(method, f"http://127.0.0.1:7071/api/{path}", body=b"", route_params={"path": route})
        response = blueprint.api_read(request)
        assert response.status_code in (404, 405), (route, response.get_body())
        assert b"runs" not in (response.get_body() or b"") and b"run_id" not in (response.get_body() or b"")


def queued(svc: Services) -> list[str]:
    return [m["job_id"] for m in svc.queue.drain()]  # type: ignore[attr-defined]


def test_blob_event_to_result(svc: Services) -> None:
    store = svc.store
    assert isinstance(store, AzureBlobObjectStore)
    key = "uploads/odd name #1 ü.jpg"
    store.put(key, JPEG, content_type="image/jpeg")
    blueprint.on_upload(blob_event(store, key))
    (job_id,) = queued(svc)
    assert job_id == job_id_for(key, hashlib.md5(JPEG).hexdigest())
    blueprint.process_job(queue_message({"job_id": job_id}))
    assert svc.jobs.get(job_id).status is Status.DONE
    assert decode(store.get("results/odd name #1 ü.jpg").data).mode == "L"


def test_a_duplicate_blob_event_is_one_job(svc: Services) -> None:
    store = svc.store
    assert isinstance(store, AzureBlobObjectStore)
    store.put("uploads/dup.jpg", JPEG)
    for _ in range(3):
        blueprint.on_upload(blob_event(store, "uploads/dup.jpg"))
    ids = set(queued(svc))
    assert len(ids) == 1
    for _ in range(3):
        blueprint.process_job(queue_message({"job_id": next(iter(ids))}))
    assert [i.key for i in store.list("results/")] == ["results/dup.jpg"]
    assert svc.jobs.get(next(iter(ids))).attempts == 1


@pytest.mark.parametrize("key", ["results/x.jpg", "jobs/x.json"])
def test_blobs_outside_uploads_trigger_nothing(svc: Services, key: str) -> None:
    store = svc.store
    assert isinstance(store, AzureBlobObjectStore)
    store.put(key, JPEG)
    blueprint.on_upload(blob_event(store, key))
    assert queued(svc) == []


def test_a_bad_image_fails_and_the_message_is_acknowledged(svc: Services) -> None:
    store = svc.store
    assert isinstance(store, AzureBlobObjectStore)
    store.put("uploads/bad.png", b"\x89PNG\r\n\x1a\n not really")
    blueprint.on_upload(blob_event(store, "uploads/bad.png"))
    (job_id,) = queued(svc)
    blueprint.process_job(queue_message({"job_id": job_id}))  # returns: the host deletes the message
    job = svc.jobs.get(job_id)
    assert (job.status, job.attempts) == (Status.FAILED, 1)
    assert list(store.list("results/")) == []


@pytest.mark.parametrize(
    ("body", "logged"),
    [
        (b"not json", "no job_id"),
        (b"[]", "no job_id"),
        (b'{"job": 1}', "no job_id"),
        (json.dumps({"job_id": "f" * 32}).encode(), "unknown job"),
    ],
)
def test_malformed_or_unknown_messages_are_acknowledged(
    svc: Services, body: bytes, logged: str, caplog: pytest.LogCaptureFixture
) -> None:
    # Returning (not raising) is what makes the host delete the message; the effect: nothing made, a log line each.
    caplog.set_level(logging.INFO)
    calls = [(blueprint.process_job, queue_message(body)), (blueprint.on_poison, queue_message(body, dequeue_count=5))]
    for handler, message in calls:
        caplog.clear()
        assert handler(message) is None
        warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
        assert any(logged in line for line in warnings), (handler, warnings)
    assert [info.key for info in svc.store.list("")] == []  # no job record, no result, nothing else
    assert queued(svc) == []


def test_a_transient_failure_raises_so_the_host_retries() -> None:
    azure_services.use(Services.over(FailingReads(TransientError("injected outage")), InMemoryTaskQueue()))
    try:
        with pytest.raises(TransientError):
            blueprint.process_job(queue_message({"job_id": "a" * 32}))
    finally:
        azure_services.use(None)


def test_a_poison_message_fails_the_job_with_the_attempts(svc: Services) -> None:
    store = svc.store
    assert isinstance(store, AzureBlobObjectStore)
    store.put("uploads/p.jpg", JPEG)
    blueprint.on_upload(blob_event(store, "uploads/p.jpg"))
    (job_id,) = queued(svc)
    blueprint.on_poison(queue_message({"job_id": job_id}))
    job = svc.jobs.get(job_id)
    assert (job.status, job.error) == (Status.FAILED, "gave up after 5 attempts")


def test_http_handlers_answer_like_the_api(svc: Services) -> None:
    response = http("POST", "/jobs", JPEG, **{"Content-Type": "image/jpeg"})
    assert response.status_code == 202
    job = json.loads(response.get_body())
    assert response.headers["Location"] == f"http://127.0.0.1:7071/api/jobs/{job['id']}"
    assert json.loads(http("GET", f"/jobs/{job['id']}").get_body())["status"] == "PENDING"
    assert http("GET", f"/jobs/{job['id']}/result").status_code == 409
    assert http("GET", "/").headers["Content-Type"].startswith("text/html")
    missing = http("GET", "/jobs/nope")
    assert (missing.status_code, json.loads(missing.get_body())["error"]) == (404, "not_found")
    assert http("DELETE", f"/jobs/{job['id']}").status_code == 405
    assert http("POST", "/jobs", b"plain text").status_code == 415


def test_on_upload_of_50_mib_allocates_far_less_than_the_upload(
    svc: Services, azure_store: AzureBlobObjectStore, capsys: pytest.CaptureFixture[str]
) -> None:
    """The SDK-type binding hands over a client: the handler, and the host before it, read no upload bytes.

    ``func.InputStream`` (what on_upload took before) makes the host download the whole blob first;
    the same 50 MiB read that way is measured beside it as the baseline.
    """
    key, size = "uploads/big.raw", 50 * 1024 * 1024
    azure_store.put(key, os.urandom(size), content_type="application/octet-stream")
    handler = blueprint.on_upload._function.get_user_function()
    tracemalloc.start()
    try:
        argument = blob_argument(handler, azure_store, CONNECTION, azure_store.container_name, key)
        tracemalloc.reset_peak()
        blueprint.on_upload(argument)
        _, handler_peak = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        blob_argument(lambda stream: None, azure_store, CONNECTION, azure_store.container_name, key)
        _, download_peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    job = svc.jobs.get(job_id_for(key, azure_store.head(key).md5 or ""))
    assert job.status is Status.PENDING, "the upload became a job"
    assert handler_peak < size / 50, f"on_upload allocated {handler_peak:,} bytes for a {size:,}-byte upload"
    assert download_peak >= size, "the InputStream baseline really downloads the upload"
    with capsys.disabled():
        ratio = download_peak / handler_peak
        print(f"\non_upload of 50 MiB: peak {handler_peak / 2**20:.2f} MiB allocated "
              f"(InputStream baseline: {download_peak / 2**20:.1f} MiB, {ratio:.0f}x)")  # fmt: skip
