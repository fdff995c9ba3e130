"""The port contracts on fake-gcs-server and Azurite."""

from __future__ import annotations

import os
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


def test_a_read_names_the_listed_generation_only_when_the_object_moved_on(gcs_env: object) -> None:
    """Reads go unpinned and are checked by the response's generation: a generation replaced since it was
    listed is still read by name where versioning keeps it, and an object rewritten since is never mixed in."""
    client = storage.Client(project="local")
    bucket = client.bucket(f"versioned-{os.urandom(4).hex()}")
    bucket.versioning_enabled = True
    client.create_bucket(bucket)
    blob = bucket.blob("v.bin")
    blob.upload_from_string(b"first generation")
    source = GcsSource(bucket.name)
    old = next(iter(source.list("v.bin")))
    assert source.read_range("v.bin", old.generation, 0, 4) == b"first"
    blob.upload_from_string(b"second generation")
    new = next(iter(source.list("v.bin")))
    assert new.generation != old.generation
    assert source.read_range("v.bin", old.generation, 6, 15) == b"generation"
    assert source.read_range("v.bin", old.generation, 0, old.size - 1) == b"first generation"
    assert source.read_range("v.bin", new.generation, 0, 5) == b"second"
    blob.delete()
    assert source.read_range("v.bin", new.generation, 0, 5) == b"second"


class TestAzureBlobDestination(DestinationContract):
    @pytest.fixture
    def dest(self, container: str) -> AzureBlobDestination:
        return AzureBlobDestination(container)
