"""The port contracts, on the in-memory fakes."""

from __future__ import annotations

import pytest

from core.memory import InMemoryDestination, InMemoryObjectStore, InMemorySource, InMemoryTaskQueue
from tests.contracts.migration import Add, DestinationContract, SourceContract
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


class TestInMemorySource(SourceContract):
    @pytest.fixture
    def source(self) -> InMemorySource:
        return InMemorySource("contract")

    @pytest.fixture
    def add(self, source: InMemorySource) -> Add:
        return lambda key, data, **properties: source.add(key, data, **properties) and None


class TestInMemoryDestination(DestinationContract):
    @pytest.fixture
    def dest(self) -> InMemoryDestination:
        return InMemoryDestination()
