"""What the fan-out functions call: one batch message in, one batch copied and recorded.

The message names the destination container, where the run record lives; the
run record names the source bucket. The functions stay thin: they parse their
trigger and call ``handle_message`` or ``handle_dead_letter``, which drop (log and
acknowledge) a message that can never work, as ``pipeline.handle_job_message`` does for jobs.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from core.clouds.azure_blob import AzureBlobObjectStore
from core.clouds.azure_destination import AzureBlobDestination
from core.clouds.gcs_source import GcsSource
from core.errors import BadRequest, NotFound
from core.ports import TaskQueue
from migrate import fanout, runs, steps
from migrate.copy import existing_blob

log = logging.getLogger("migrate.worker")


def _batch(payload: object) -> tuple[Mapping[str, Any], str]:
    """The batch message and the container it names; ``BadRequest`` for anything else (JSON null, a list)."""
    container = payload.get("container") if isinstance(payload, Mapping) else None
    if not isinstance(payload, Mapping) or not isinstance(container, str) or not container:
        raise BadRequest(f"the batch message names no container: {payload!r:.200}")
    return payload, container


def handle(payload: object, queue: TaskQueue) -> dict[str, Any]:
    """Copy the batch, or run the step (``migrate.steps``); ``queue`` is where held batches are released."""
    message, container = _batch(payload)
    records = AzureBlobObjectStore(container)
    if "step" in message:
        return steps.handle(message, records, _sides)
    run = runs.load_run(records, str(message.get("run_id")))
    bucket = run.source.split("://", 1)[1].split("/", 1)[0]
    dest = AzureBlobDestination(container)
    return fanout.process_batch(message, GcsSource(bucket), dest, records, queue, existing_blob(dest))


def _sides(run: runs.Run) -> Any:
    from migrate.locations import parse_location
    from migrate.wiring import open_sides

    return open_sides(parse_location(run.source, "gs"), parse_location(run.dest, "az"), ends=True)


def handle_poison(payload: object, reason: str, queue: TaskQueue | None = None) -> None:
    """The batch the platform gave up on is recorded failed; with ``queue`` its lane goes on (``max_batches``)."""
    message, container = _batch(payload)
    if "step" in message:
        steps.give_up(message, AzureBlobObjectStore(container), reason)
        return
    fanout.mark_failed(AzureBlobObjectStore(container), message, reason, queue)


def handle_message(payload: object, queue: TaskQueue, *, message_id: str = "") -> dict[str, Any] | None:
    """A fan-out message from either cloud: copy its batch; None for one that can never work.

    A message that is no batch, or names an unknown run, is logged and dropped: raising
    would have the platform retry it and then dead-letter it, with the same outcome.
    Anything transient propagates so the platform retries.
    """
    try:
        state = handle(payload, queue)
    except (BadRequest, NotFound) as exc:
        log.error("dropped migration message %s: %s", message_id, exc)
        return None
    run_id = payload.get("run_id") if isinstance(payload, Mapping) else None
    if "batch" in state:
        log.info("batch %s of run %s: %s", state["batch"], run_id, state["state"])
    return state


def handle_dead_letter(payload: object, reason: str, queue: TaskQueue | None = None, *, message_id: str = "") -> bool:
    """A batch the platform gave up on is recorded failed; False (logged) for a message that is no batch."""
    try:
        handle_poison(payload, reason, queue)
    except BadRequest as exc:
        log.error("dropped a malformed migration dead letter %s: %s", message_id, exc)
        return False
    return True
