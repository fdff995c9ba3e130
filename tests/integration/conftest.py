"""Fresh stores on the real emulators, one bucket or container per test."""

from __future__ import annotations

import pytest

from core.clouds.azure_blob import AzureBlobObjectStore
from core.clouds.gcs import GcsObjectStore
from devstack.emulators import Azurite, FakeGcs
from tests.helper import unique_name

pytestmark = pytest.mark.emulator


@pytest.fixture
def gcs_store(gcs_env: FakeGcs) -> GcsObjectStore:
    store = GcsObjectStore(unique_name())
    store.create_bucket()
    return store


@pytest.fixture
def azure_store(azure_env: Azurite) -> AzureBlobObjectStore:
    store = AzureBlobObjectStore(unique_name())
    store.create_container()
    return store


@pytest.fixture
def bucket(gcs_env: FakeGcs) -> str:
    """A fresh, empty GCS bucket (the migration's source)."""
    name = unique_name("src")
    GcsObjectStore(name).create_bucket()
    return name


@pytest.fixture
def container(azure_env: Azurite) -> str:
    """A fresh, empty Azure container (the migration's destination)."""
    name = unique_name("dst")
    AzureBlobObjectStore(name).create_container()
    return name
