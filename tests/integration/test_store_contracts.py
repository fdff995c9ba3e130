"""The port contracts on fake-gcs-server and Azurite."""

from __future__ import annotations

import pytest

from core.clouds.azure_blob import AzureBlobObjectStore
from core.clouds.gcs import GcsObjectStore
from tests.contracts.stores import JobStoreContract, ObjectStoreContract

pytestmark = pytest.mark.emulator


class TestGcsObjectStore(ObjectStoreContract):
    @pytest.fixture
    def store(self, gcs_store: GcsObjectStore) -> GcsObjectStore:
        return gcs_store


class TestAzureBlobObjectStore(ObjectStoreContract):
    @pytest.fixture
    def store(self, azure_store: AzureBlobObjectStore) -> AzureBlobObjectStore:
        return azure_store


class TestGcsJobStore(JobStoreContract):
    @pytest.fixture
    def store(self, gcs_store: GcsObjectStore) -> GcsObjectStore:
        return gcs_store


class TestAzureJobStore(JobStoreContract):
    @pytest.fixture
    def store(self, azure_store: AzureBlobObjectStore) -> AzureBlobObjectStore:
        return azure_store
