"""The port contracts on real GCS and Azure Blob (``make live``)."""

from __future__ import annotations

import pytest

from core.clouds.azure_blob import AzureBlobObjectStore
from core.clouds.gcs import GcsObjectStore
from tests.contracts.stores import JobStoreContract, ObjectStoreContract

pytestmark = pytest.mark.live


class TestLiveGcsObjectStore(ObjectStoreContract):
    @pytest.fixture
    def store(self, gcs_store: GcsObjectStore) -> GcsObjectStore:
        return gcs_store


class TestLiveAzureObjectStore(ObjectStoreContract):
    @pytest.fixture
    def store(self, azure_store: AzureBlobObjectStore) -> AzureBlobObjectStore:
        return azure_store


class TestLiveGcsJobStore(JobStoreContract):
    @pytest.fixture
    def store(self, gcs_store: GcsObjectStore) -> GcsObjectStore:
        return gcs_store


class TestLiveAzureJobStore(JobStoreContract):
    @pytest.fixture
    def store(self, azure_store: AzureBlobObjectStore) -> AzureBlobObjectStore:
        return azure_store
