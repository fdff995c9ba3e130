"""Stores on real GCP and Azure, one fresh bucket or container per test, deleted after.

Skipped unless credentials are configured:
- GCS: ``LIVE_GCP_PROJECT`` (and Application Default Credentials);
- Azure: ``LIVE_AZURE_STORAGE_CONNECTION_STRING``, or ``AZURE_STORAGE_ACCOUNT_URL``
  with a ``DefaultAzureCredential`` that may create containers.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from core.clouds.azure_blob import AzureBlobObjectStore
from core.clouds.gcs import GcsObjectStore
from tests.helper import unique_name


@pytest.fixture
def gcs_store(monkeypatch: pytest.MonkeyPatch) -> Iterator[GcsObjectStore]:
    project = os.environ.get("LIVE_GCP_PROJECT")
    if not project:
        pytest.skip("set LIVE_GCP_PROJECT (and Application Default Credentials) to run against real GCS")
    monkeypatch.delenv("STORAGE_EMULATOR_HOST", raising=False)
    monkeypatch.setenv("GOOGLE_CLOUD_PROJECT", project)
    store = GcsObjectStore(unique_name("gray-live"))
    store.create_bucket()
    yield store
    store.bucket.delete(force=True)


@pytest.fixture
def azure_store(monkeypatch: pytest.MonkeyPatch) -> Iterator[AzureBlobObjectStore]:
    connection = os.environ.get("LIVE_AZURE_STORAGE_CONNECTION_STRING")
    if connection:
        monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING", connection)
    elif not os.environ.get("AZURE_STORAGE_ACCOUNT_URL"):
        pytest.skip("set LIVE_AZURE_STORAGE_CONNECTION_STRING or AZURE_STORAGE_ACCOUNT_URL to run against real Azure")
    else:
        monkeypatch.delenv("AZURE_STORAGE_CONNECTION_STRING", raising=False)
    store = AzureBlobObjectStore(unique_name("gray-live"))
    store.create_container()
    yield store
    store.container.delete_container()
