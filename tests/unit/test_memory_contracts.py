"""The port contracts, on the in-memory fakes."""

from __future__ import annotations

import pytest

from core.memory import InMemoryObjectStore, InMemoryTaskQueue
from tests.contracts.queues import Received, TaskQueueContract
from tests.contracts.stores import JobStoreContract, ObjectStoreContract


class TestInMemoryObjectStore(ObjectStoreContract):
    @pytest.fixture
    def store(self) -> InMemoryObjectStore:
        return InMemoryObjectStore()


class TestInMemoryJobStore(JobStoreContract):
    @pytest.fixture
    def store(self) -> InMemoryObjectStore:
        return InMemoryObjectStore()


class TestInMemoryTaskQueue(TaskQueueContract):
    @pytest.fixture
    def queue(self) -> InMemoryTaskQueue:
        return InMemoryTaskQueue()

    @pytest.fixture
    def received(self, queue: InMemoryTaskQueue) -> Received:
        return queue.drain
