"""The migration's functions-framework entry points on GCP: the fan-out's batches and their dead letters."""

from __future__ import annotations

import logging
from typing import Any

from core.errors import BadRequest, NotFound
from functions_gcp import framework
from functions_gcp.pipeline import gave_up, message_json

log = logging.getLogger("functions_gcp")


@framework.cloud_event
def migrate_batch(event: Any) -> None:
    """One migrate-batches message: copy the batch to Azure Blob. Raising makes Pub/Sub redeliver."""
    from core.clouds.pubsub import PubSubTaskQueue
    from migrate import worker
    from migrate.fanout import BATCH_QUEUE

    payload = message_json(event)
    try:
        state = worker.handle(payload, PubSubTaskQueue(BATCH_QUEUE))
    except (BadRequest, NotFound) as exc:
        log.error("dropped migration message %s: %s", event["id"], exc)
        return
    log.info("batch %s of run %s: %s", state["batch"], (payload or {}).get("run_id"), state["state"])


@framework.cloud_event
def migrate_batch_dead_letter(event: Any) -> None:
    """A migrate-batches message that Pub/Sub gave up on: the batch is recorded failed in its run."""
    from migrate import worker

    try:
        worker.handle_poison(message_json(event), gave_up(event))
    except BadRequest as exc:
        log.error("dropped a malformed migration dead letter %s: %s", event["id"], exc)
