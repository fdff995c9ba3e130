"""The migration's functions-framework entry points on GCP: the fan-out's batches and their dead letters."""

from __future__ import annotations

from typing import Any

from functions_gcp import framework
from functions_gcp.pipeline import gave_up, message_json


@framework.cloud_event
def migrate_batch(event: Any) -> None:
    """One migrate-batches message: copy the batch to Azure Blob. Raising makes Pub/Sub redeliver."""
    from core.clouds.pubsub import PubSubTaskQueue
    from migrate import worker
    from migrate.fanout import BATCH_QUEUE

    worker.handle_message(message_json(event), PubSubTaskQueue(BATCH_QUEUE), message_id=event["id"])


@framework.cloud_event
def migrate_batch_dead_letter(event: Any) -> None:
    """A migrate-batches message that Pub/Sub gave up on: the batch is recorded failed in its run."""
    from core.clouds.pubsub import PubSubTaskQueue
    from migrate import worker
    from migrate.fanout import BATCH_QUEUE

    worker.handle_dead_letter(message_json(event), gave_up(event), PubSubTaskQueue(BATCH_QUEUE), message_id=event["id"])
