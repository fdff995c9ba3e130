"""The TaskQueue contract: mixed into a test class that provides ``queue`` and ``received``.

``received()`` returns the payloads a consumer has been given so far (and takes
them). The same tests run on the in-memory fake (tests/unit), Google's Pub/Sub
emulator and Azurite (tests/integration).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from core.errors import BadRequest
from core.ports import TaskQueue

Received = Callable[[], list[Any]]


def collect(received: Received, want: int, timeout: float = 20.0) -> list[Any]:
    """Every payload delivered until ``want`` have arrived (or the time is up)."""
    got: list[Any] = []
    deadline = time.monotonic() + timeout
    while len(got) < want and time.monotonic() < deadline:
        got += received()
    return got


class TaskQueueContract:
    @pytest.fixture
    def queue(self) -> TaskQueue:  # pragma: no cover - provided by the subclass
        raise NotImplementedError

    @pytest.fixture
    def received(self) -> Received:  # pragma: no cover - provided by the subclass
        raise NotImplementedError

    def test_the_payload_arrives_as_the_same_json_object(self, queue: TaskQueue, received: Received) -> None:
        payload = {"job_id": "j-1", "name": "ünï #?% /../x", "n": 3, "f": 0.5, "none": None, "nested": {"a": [1, "b"]}}
        queue.send(payload)
        assert collect(received, 1) == [payload]

    def test_each_send_returns_its_own_message_id(self, queue: TaskQueue, received: Received) -> None:
        ids = [queue.send({"job_id": f"j-{i}"}) for i in range(3)]
        assert all(isinstance(i, str) and i for i in ids) and len(set(ids)) == 3
        assert sorted(p["job_id"] for p in collect(received, 3)) == ["j-0", "j-1", "j-2"]

    def test_concurrent_senders_lose_nothing(self, queue: TaskQueue, received: Received) -> None:
        threads = [threading.Thread(target=queue.send, args=({"job_id": f"c-{i}"},)) for i in range(20)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert sorted(p["job_id"] for p in collect(received, 20)) == sorted(f"c-{i}" for i in range(20))

    def test_a_payload_no_platform_carries_is_refused_and_nothing_is_sent(
        self, queue: TaskQueue, received: Received
    ) -> None:
        with pytest.raises(BadRequest):
            queue.send({"blob": "x" * (11 * 1024 * 1024)})  # over Pub/Sub's 10 MB and Azure's 64 KiB
        queue.send({"job_id": "after"})
        assert collect(received, 1) == [{"job_id": "after"}]
        assert received() == []
