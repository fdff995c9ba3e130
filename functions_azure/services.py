"""The services of the Azure functions, built lazily once per process.

Storage: ``AZURE_STORAGE_CONNECTION_STRING``, else the data connection's
(``DataStorage``) connection string, else the host's ``AzureWebJobsStorage`` one
(``UseDevelopmentStorage=true`` for Azurite: locally one account serves both), else
``AZURE_STORAGE_ACCOUNT_URL`` with the data identity (``AZURE_CLIENT_ID``).
Container: ``AZURE_STORAGE_CONTAINER`` (default ``grayscale``).
"""

from __future__ import annotations

import os

from core import config, logs
from core.clouds.identity import CONNECTION_STRING_VAR  # no SDK: identity imports them when asked
from core.pipeline import REPLICA_KEY, LazyServices, Services
from functions_azure.settings import CONNECTION, CONTAINER_SETTING, DEFAULT_CONTAINER, HOST_CONNECTION, JOBS_QUEUE


def share_host_storage() -> None:
    """Locally, where connections are strings: the data connection falls back to the host's (one account, as
    ``func start`` has), and the adapters (which read AZURE_STORAGE_CONNECTION_STRING) use it. Deployed, both are
    identity-based (``__accountName``) and nothing changes here."""
    for name in (CONNECTION, HOST_CONNECTION):
        value = os.environ.get(name, "").strip()
        if value.startswith("UseDevelopmentStorage") or "AccountName=" in value:
            os.environ.setdefault(CONNECTION, value)
            os.environ.setdefault(CONNECTION_STRING_VAR, value)
            return


def build() -> Services:
    """Services over the configured container and the jobs queue (the SDKs load here, on first use)."""
    from core.clouds.azure_blob import AzureBlobObjectStore
    from core.clouds.azure_queue import AzureQueueTaskQueue

    share_host_storage()
    container = os.environ.get(CONTAINER_SETTING, "").strip() or DEFAULT_CONTAINER
    built = Services.over(AzureBlobObjectStore(container), AzureQueueTaskQueue(JOBS_QUEUE))
    built.upload_events = config.upload_events()  # Event Grid's BlobCreated sends the message
    built.hold_key = REPLICA_KEY  # Azure is the migration's target: held while it is a replica
    return built


services = LazyServices(build, on_first_use=logs.configure)
"""This process's services: ``services()`` builds them on first call; ``services.use(fake)`` in tests."""
use = services.use
