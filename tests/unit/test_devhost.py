"""The devhost keeps working when storage is unreachable for a while (found by tests/reliability).

A message it cannot settle comes back after its lease, and a blob it cannot read is
delivered again, as Event Grid retries: neither kills the trigger's loop nor loses the event.
"""

from __future__ import annotations

import azure.functions as func
import azurefunctions.extensions.bindings.blob as blob
import pytest

from core.clouds.azure_queue import Received
from core.errors import TransientError
from core.memory import InMemoryObjectStore
from core.ports import ObjectInfo, StoredObject
from functions_azure.devhost import DevHost
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
    dev._run_queue_message(queue, poison, "process_job", lambda m: handled.append(m.id), message(1))  # type: ignore[arg-type]
    assert handled == ["m1"] and queue.calls == ["delete"]


def test_a_failed_message_that_cannot_be_released_or_poisoned_does_not_raise() -> None:
    dev = host()

    def fails(_: func.QueueMessage) -> None:
        raise RuntimeError("handler failed")

    for count, expected in ((1, ["release"]), (dev.settings["max_dequeue_count"], ["send_body"])):
        queue, poison = Unreachable(), Unreachable()
        dev._run_queue_message(queue, poison, "process_job", fails, message(count))  # type: ignore[arg-type]
        assert queue.calls + poison.calls == expected


def test_a_blob_unreadable_for_a_moment_is_still_delivered_once() -> None:
    dev, store = host(), FailingReads(TransientError("connection refused"), times=1)
    store.put("uploads/a.jpg", b"bytes", content_type="image/jpeg")
    delivered: list[bytes] = []
    dev._deliver_blob(store, "on_upload", "c", "uploads/a.jpg", CONNECTION, lambda blob: delivered.append(blob.read()))  # type: ignore[arg-type]
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

    def get(self, key: str) -> StoredObject:
        self.reads += 1
        return super().get(key)


def test_an_sdk_type_trigger_gets_a_client_and_no_bytes(monkeypatch: pytest.MonkeyPatch) -> None:
    """As the worker does for ``azurefunctions.extensions.bindings.blob``: a client from the binding data."""
    monkeypatch.setenv(CONNECTION, "UseDevelopmentStorage=true")
    dev, store = host(), HeadFailsOnce()
    store.put("uploads/a b.jpg", b"bytes", content_type="image/jpeg")
    delivered: list[tuple[str, str]] = []

    def on_upload(client: blob.BlobClient) -> None:
        delivered.append((client.container_name, client.blob_name))

    dev._deliver_blob(store, "on_upload", "c", "uploads/a b.jpg", CONNECTION, on_upload)  # type: ignore[arg-type]
    assert delivered == [("c", "uploads/a b.jpg")] and store.heads == 2
    assert store.reads == 0, "an SDK-type blob trigger reads no bytes"


def test_a_blob_deleted_before_delivery_is_dropped() -> None:
    dev, store = host(), InMemoryObjectStore()
    delivered: list[object] = []
    dev._deliver_blob(store, "on_upload", "c", "uploads/gone.jpg", CONNECTION, delivered.append)  # type: ignore[arg-type]
    assert delivered == []
