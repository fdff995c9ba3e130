"""The devhost keeps working when storage is unreachable for a while (found by tests/reliability).

A message it cannot settle comes back after its lease, and a blob it cannot read is
delivered again, as Event Grid retries: neither kills the trigger's loop nor loses the event.
"""

from __future__ import annotations

import azure.functions as func

from core.clouds.azure_queue import Received
from core.errors import TransientError
from core.memory import InMemoryObjectStore
from functions_azure.devhost import DevHost
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
    dev._deliver_blob(store, "on_upload", "c", "uploads/a.jpg", lambda blob: delivered.append(blob.read()))  # type: ignore[arg-type]
    assert delivered == [b"bytes"] and store.times == 0


def test_a_blob_deleted_before_delivery_is_dropped() -> None:
    dev, store = host(), InMemoryObjectStore()
    delivered: list[object] = []
    dev._deliver_blob(store, "on_upload", "c", "uploads/gone.jpg", delivered.append)  # type: ignore[arg-type]
    assert delivered == []
