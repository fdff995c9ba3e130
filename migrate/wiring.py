"""The real clouds wired into the use cases' ports, for the entry points that run them (the CLI, the step tasks)."""

from __future__ import annotations

from typing import Any

from migrate.locations import Location, open_ends


def open_sides(source_at: Location, dest_at: Location, *, ends: bool = False) -> Any:
    """The real clouds as the use cases' ports (``migrate.cutover.Sides``); with ``ends``, also the bucket as a
    copy source and the container as a destination (the cutover verifies)."""
    from core.clouds.azure_blob import AzureBlobObjectStore
    from core.clouds.azure_queue import AzureQueueTaskQueue
    from core.clouds.gcs import GcsObjectStore
    from core.clouds.pubsub import PubSubTaskQueue
    from core.clouds.replication_feed import replication_feed
    from core.names import JOBS
    from migrate.cutover import Sides

    source, dest = open_ends(source_at, dest_at, checked=False) if ends else (None, None)
    return Sides(source_at, dest_at, GcsObjectStore(source_at.container), AzureBlobObjectStore(dest_at.container),
                 PubSubTaskQueue(JOBS), AzureQueueTaskQueue(JOBS), source, dest,
                 replication_feed(source_at.container))  # fmt: skip
