"""What the fan-out functions call: one batch message in, one batch copied and recorded.

The message names the destination container, where the run record lives; the
run record names the source bucket. The functions stay thin: they parse their
trigger and call ``handle`` or ``handle_poison``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from core.clouds.azure_blob import AzureBlobDestination, AzureBlobObjectStore
from core.clouds.gcs import GcsSource
from core.errors import BadRequest, NotFound
from core.ports import ObjectDetails, TaskQueue
from migrate import fanout


def _container(payload: Mapping[str, Any]) -> str:
    container = payload.get("container")
    if not isinstance(container, str) or not container:
        raise BadRequest(f"the batch message names no container: {dict(payload)!r:.200}")
    return container


def handle(payload: Mapping[str, Any], queue: TaskQueue) -> dict[str, Any]:
    """Copy the batch; ``queue`` is where held batches are released (the queue the message came from)."""
    container = _container(payload)
    records = AzureBlobObjectStore(container)
    run = fanout.load_run(records, str(payload.get("run_id")))
    bucket = run.source.split("://", 1)[1].split("/", 1)[0]
    dest = AzureBlobDestination(container)

    def head(key: str) -> ObjectDetails | None:
        try:
            return dest.head(key)
        except NotFound:
            return None

    return fanout.process_batch(payload, GcsSource(bucket), dest, records, queue, head)


def handle_poison(payload: Mapping[str, Any], reason: str) -> None:
    """The batch the platform gave up on is recorded failed."""
    fanout.mark_failed(AzureBlobObjectStore(_container(payload)), payload, reason)
