"""Both clouds' local stacks, wired to each other for the migration.

Azurite starts first, so that the GCP functions (``migrate_batch`` copies into
Azure) get its connection string; the Azure stack then reuses that Azurite and
gets fake-gcs-server's address, so that its ``migrate_batch`` can read GCS.
"""

from __future__ import annotations

import contextlib

from devstack.azure import AzureStack
from devstack.emulators import Azurite
from devstack.eventgrid import EventGridProxy
from devstack.gcp import GcpStack


def both_clouds(
    stack: contextlib.ExitStack, *, bucket: str, container: str, extra_env: dict[str, str] | None = None
) -> tuple[GcpStack, AzureStack]:
    """Start both stacks on ``stack``; they stop with it."""
    azurite = stack.enter_context(Azurite())
    # GCP's migrate_batch writes through Event Grid's proxy too: a migrated upload raises BlobCreated on Azure.
    eventgrid = stack.enter_context(EventGridProxy(azurite.blob_port))
    shared = {
        **(extra_env or {}),
        "AZURE_STORAGE_CONNECTION_STRING": azurite.connection_string_via(eventgrid.port),
        "MIGRATE_CONTAINER": container,
    }
    gcp = stack.enter_context(GcpStack(bucket=bucket, extra_env=shared))
    assert gcp.gcs is not None
    gcs_env = {**gcp.gcs.env(), "GOOGLE_CLOUD_PROJECT": "local"}
    # Azure's migration API may migrate GCP's bucket (deploy/azure.py --gcs-bucket sets the same).
    azure_env = {"MIGRATE_SOURCES": bucket, **(extra_env or {}), **gcs_env}
    azure = AzureStack(container=container, azurite=azurite, eventgrid=eventgrid, extra_env=azure_env)
    stack.enter_context(azure)
    return gcp, azure
