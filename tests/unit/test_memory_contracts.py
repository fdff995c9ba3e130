"""The port contracts, on the in-memory fakes."""

from __future__ import annotations

import pytest

from core.memory import InMemoryObjectStore
from tests.contracts.stores import JobStoreContract, ObjectStoreContract


class TestInMemoryObjectStore(ObjectStoreContract):
    @pytest.fixture
    def store(self) -> InMemoryObjectStore:
        return InMemoryObjectStore()


class TestInMemoryJobStore(JobStoreContract):
    @pytest.fixture
    def store(self) -> InMemoryObjectStore:
        return InMemoryObjectStore()
