"""The devhost keeps working when storage is unreachable for a while (found by tests/reliability).

A message it cannot settle comes back after its lease, and a blob it cannot read is
delivered again, as Event Grid retries: neither kills the trigger's loop nor loses the event.
"""

from __future__ import annotations

import io
import json
import threading
from collections.abc import Callable
from typing import Any

import azure.functions as func
import azurefunctions.extensions.bindings.blob as blob
import pytest

from core.clouds.azure_queue import Received
from core.errors import TransientError
from core.memory import InMemoryObjectStore
from core.ports import ObjectInfo, StoredObject
from functions_azure.devhost import DevHost, HostSettings
from functions_azure.devhost import http as devhost_http
from functions_azure.devhost.blobs import BlobTrigger
from functions_azure.devhost.http import BodyTooLarge, read_body
from functions_azure.settings import CONNECTION
from tests.helper import FailingReads


class Unreachable:
    """A queue whose service is down: every call fails as the adapters report it."""

    queue_name = "jobs"

    def __init__(self) -> None:
        self.calls: list[str] = []

    def _down(self, call: str) -> None:
        self.calls.append(call)
        raise TransientError("connection refused")

    def delete(self, message: Received) -> None:
        self._down("delete")

    def release(self, message: Received, *, visibility_timeout: int) -> None:
        self._down("release")

    def send_body(self, body: bytes) -> None:
        self._down("send_body")


def host() -> DevHost:
    return DevHost(func.FunctionApp())


def message(dequeue_count: int) -> Received:
    return Received(body=b"{}", id="m1", pop_receipt="r1", dequeue_count=dequeue_count)


def test_a_message_that_cannot_be_settled_is_left_to_its_lease() -> None:
    dev, queue, poison = host(), Unreachable(), Unreachable()
    handled: list[str] = []
    dev.queues.run_message(queue, poison, "process_job", lambda m: handled.append(m.id), message(1))  # type: ignore[arg-type]
    assert handled == ["m1"] and queue.calls == ["delete"]


def test_a_failed_message_that_cannot_be_released_or_poisoned_does_not_raise() -> None:
    dev = host()

    def fails(_: func.QueueMessage) -> None:
        raise RuntimeError("handler failed")

    for count, expected in ((1, ["release"]), (dev.settings.max_dequeue_count, ["send_body"])):
        queue, poison = Unreachable(), Unreachable()
        dev.queues.run_message(queue, poison, "process_job", fails, message(count))  # type: ignore[arg-type]
        assert queue.calls + poison.calls == expected


def blob_host(store: InMemoryObjectStore, handler: Callable[[Any], None]) -> DevHost:
    """A devhost whose one blob trigger, ``on_upload`` on ``c/uploads/``, reads ``store``."""
    dev = host()
    dev.blobs.triggers = [BlobTrigger("on_upload", "c", "uploads/", CONNECTION, handler)]
    dev.blobs.store = lambda container: store
    return dev


def event_grid(key: str, *, container: str = "c", kind: str = "Microsoft.Storage.BlobCreated") -> bytes:
    """An Event Grid notification, as it posts one to the blobs webhook."""
    return json.dumps([{
        "id": "e1", "eventType": kind, "subject": f"/blobServices/default/containers/{container}/blobs/{key}",
        "data": {"api": "PutBlob", "url": f"http://127.0.0.1/devstoreaccount1/{container}/{key}"},
        "eventTime": "2026-11-27T00:00:00Z", "dataVersion": "", "metadataVersion": "1",
    }]).encode()  # fmt: skip


def post(dev: DevHost, body: bytes, kind: str = "Notification", function: str = "on_upload") -> tuple[int, bytes]:
    path = f"/runtime/webhooks/blobs?functionName=Host.Functions.{function}"
    status, _, answer = dev.http.dispatch("POST", path, {"aeg-event-type": kind}, body)
    return status, answer


def test_the_webhook_answers_event_grids_validation_handshake() -> None:
    dev = blob_host(InMemoryObjectStore(), lambda blob: None)
    handshake = json.dumps([{"eventType": "Microsoft.EventGrid.SubscriptionValidationEvent",
                             "data": {"validationCode": "code-123"}}]).encode()  # fmt: skip
    assert post(dev, handshake, "SubscriptionValidation") == (200, b'{"validationResponse": "code-123"}')
    assert post(dev, handshake, "SubscriptionValidation", function="nope")[0] == 404


def test_a_blob_unreadable_for_a_moment_is_delivered_on_event_grids_retry() -> None:
    store = FailingReads(TransientError("connection refused"), times=1)
    store.put("uploads/a.jpg", b"bytes", content_type="image/jpeg")
    delivered: list[bytes] = []
    dev = blob_host(store, lambda blob: delivered.append(blob.read()))
    assert post(dev, event_grid("uploads/a.jpg"))[0] == 500, "a failed delivery is retried by Event Grid"
    assert post(dev, event_grid("uploads/a.jpg"))[0] == 200
    assert delivered == [b"bytes"] and store.times == 0


class HeadFailsOnce(InMemoryObjectStore):
    """The first head fails as an outage does; a read of the bytes (``get``) is counted."""

    def __init__(self) -> None:
        super().__init__()
        self.heads = self.reads = 0

    def head(self, key: str) -> ObjectInfo:
        self.heads += 1
        if self.heads == 1:
            raise TransientError("connection refused")
        return super().get(key).info

    def get(self, key: str, *, max_bytes: int | None = None) -> StoredObject:
        self.reads += 1
        return super().get(key, max_bytes=max_bytes)


def test_an_sdk_type_trigger_gets_a_client_and_no_bytes(monkeypatch: pytest.MonkeyPatch) -> None:
    """As the worker does for ``azurefunctions.extensions.bindings.blob``: a client from the binding data."""
    monkeypatch.setenv(CONNECTION, "UseDevelopmentStorage=true")
    store = HeadFailsOnce()
    store.put("uploads/a b.jpg", b"bytes", content_type="image/jpeg")
    delivered: list[tuple[str, str]] = []

    def on_upload(client: blob.BlobClient) -> None:
        delivered.append((client.container_name, client.blob_name))

    dev = blob_host(store, on_upload)
    assert [post(dev, event_grid("uploads/a b.jpg"))[0] for _ in range(2)] == [500, 200]
    assert delivered == [("c", "uploads/a b.jpg")] and store.heads == 2
    assert store.reads == 0, "an SDK-type blob trigger reads no bytes"


def test_only_blob_created_under_the_triggers_path_is_delivered() -> None:
    store = InMemoryObjectStore()
    for key in ("uploads/x.jpg", "results/x.jpg"):
        store.put(key, b"bytes")
    delivered: list[str] = []
    dev = blob_host(store, lambda blob: delivered.append(blob.name))
    assert post(dev, event_grid("results/x.jpg"))[0] == 200
    assert post(dev, event_grid("uploads/x.jpg", container="other"))[0] == 200
    assert post(dev, event_grid("uploads/x.jpg", kind="Microsoft.Storage.BlobDeleted"))[0] == 200
    assert delivered == []
    assert post(dev, event_grid("uploads/x.jpg"))[0] == 200
    assert delivered == ["c/uploads/x.jpg"]


def test_a_failing_trigger_answers_500_and_a_deleted_blob_is_dropped() -> None:
    store = InMemoryObjectStore()
    store.put("uploads/x.jpg", b"bytes")

    def fails(blob: object) -> None:
        raise RuntimeError("handler failed")

    assert post(blob_host(store, fails), event_grid("uploads/x.jpg"))[0] == 500
    delivered: list[object] = []
    assert post(blob_host(store, delivered.append), event_grid("uploads/gone.jpg"))[0] == 200
    assert delivered == []
    assert post(blob_host(store, delivered.append), b"not json")[0] == 400
    assert post(blob_host(store, delivered.append), b'[null, "x", 3]')[0] == 200, "events that are no object: ignored"
    assert delivered == []


def test_an_app_setting_overrides_host_json_as_on_the_real_host(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AzureFunctionsJobHost__extensions__queues__maxPollingInterval", raising=False)
    assert HostSettings.load().max_polling_interval == 2.0, "host.json, which ships, keeps 2 s"
    monkeypatch.setenv("AzureFunctionsJobHost__extensions__queues__maxPollingInterval", "00:00:00.100")
    assert HostSettings.load().max_polling_interval == 0.1


# HTTP bodies, as the host reads them -------------------------------------------------------------


def chunked(*pieces: bytes, trailer: bytes = b"") -> io.BytesIO:
    wire = b"".join(f"{len(p):x}\r\n".encode() + p + b"\r\n" for p in pieces) + b"0\r\n" + trailer + b"\r\n"
    return io.BytesIO(wire + b"NEXT REQUEST")


def test_a_chunked_body_is_read_whole_and_no_further() -> None:
    stream = chunked(b"abc", b"de", trailer=b"X-Trailer: 1\r\n")
    assert read_body({"Transfer-Encoding": "chunked"}, stream) == b"abcde"
    assert stream.read() == b"NEXT REQUEST"


def test_a_chunk_extension_is_ignored() -> None:
    stream = io.BytesIO(b"3;name=value\r\nabc\r\n0\r\n\r\n")
    assert read_body({"transfer-encoding": "Chunked"}, stream) == b"abc"


def test_a_chunked_body_over_the_limit_stops_reading() -> None:
    stream = chunked(b"x" * 60, b"y" * 60)
    with pytest.raises(BodyTooLarge):
        read_body({"Transfer-Encoding": "chunked"}, stream, limit=100)
    assert stream.tell() < 130  # the second chunk was never read


def test_a_declared_length_over_the_limit_is_refused_unread() -> None:
    stream = io.BytesIO(b"z" * 200)
    with pytest.raises(BodyTooLarge):
        read_body({"Content-Length": "200"}, stream, limit=100)
    assert stream.tell() == 0
    assert read_body({"Content-Length": "100"}, stream, limit=100) == b"z" * 100
    assert read_body({}, io.BytesIO(b"ignored")) == b""


def test_the_server_answers_413_beyond_the_hosts_limit_and_serves_chunked_bodies() -> None:
    import http.client

    seen: list[bytes] = []

    def dispatch(method: str, path: str, headers: dict[str, str], body: bytes) -> tuple[int, dict[str, str], bytes]:
        seen.append(body)
        return 202, {"Content-Type": "text/plain"}, b"%d" % len(body)

    server = devhost_http.server(dispatch, "127.0.0.1", 0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        connection = http.client.HTTPConnection("127.0.0.1", server.server_address[1], timeout=10)
        connection.request("POST", "/api/jobs", body=iter([b"ab", b"cd"]), encode_chunked=True)
        response = connection.getresponse()
        assert (response.status, response.read()) == (202, b"4")
        connection.request(
            "POST", "/api/jobs", body=b"x", headers={"Content-Length": str(devhost_http.MAX_BODY_BYTES + 1)}
        )
        response = connection.getresponse()
        assert response.status == 413 and b"payload_too_large" in response.read()
        assert seen == [b"abcd"]  # the oversize request reached no function
    finally:
        server.shutdown()
        server.server_close()
