"""The port contracts on fake-gcs-server and Azurite."""

from __future__ import annotations

from typing import Any

import pytest
from google.cloud import storage

from core.clouds.azure_blob import AzureBlobObjectStore
from core.clouds.azure_destination import AzureBlobDestination
from core.clouds.gcs import GcsObjectStore
from core.clouds.gcs_source import GcsSource
from tests.contracts.migration import Add, DestinationContract, SourceContract
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


class TestGcsSource(SourceContract):
    @pytest.fixture
    def source(self, bucket: str) -> GcsSource:
        return GcsSource(bucket)

    @pytest.fixture
    def add(self, bucket: str) -> Add:
        def upload(key: str, data: bytes, **properties: Any) -> None:
            storage.Client(project="local").bucket(bucket).blob(key).upload_from_string(data)

        return upload


class TestAzureBlobDestination(DestinationContract):
    @pytest.fixture
    def dest(self, container: str) -> AzureBlobDestination:
        return AzureBlobDestination(container)
