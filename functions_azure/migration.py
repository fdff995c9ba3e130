"""The migration's fan-out on Azure: one queue message per batch (logic in migrate/)."""

from __future__ import annotations

import json
import logging

import azure.functions as func

from core.errors import BadRequest, NotFound
from functions_azure.settings import BATCH_QUEUE, CONNECTION, MAX_DEQUEUE_COUNT

log = logging.getLogger("functions_azure.migration")
bp = func.Blueprint()


@bp.function_name("migrate_batch")
@bp.queue_trigger(arg_name="msg", queue_name=BATCH_QUEUE, connection=CONNECTION)
def migrate_batch(msg: func.QueueMessage) -> None:
    """Copy one batch. Raising makes the host retry, then move it to the poison queue."""
    from core.clouds.azure_queue import AzureQueueTaskQueue  # the migration's SDKs load on its first batch
    from migrate import worker

    try:
        payload = json.loads(msg.get_body())
        state = worker.handle(payload, AzureQueueTaskQueue(BATCH_QUEUE))
    except (ValueError, BadRequest, NotFound) as exc:
        log.error("dropped migration message %s: %s", msg.id, exc)
        return
    log.info("batch %s of run %s: %s", state["batch"], payload.get("run_id"), state["state"])


@bp.function_name("migrate_batch_poison")
@bp.queue_trigger(arg_name="msg", queue_name=f"{BATCH_QUEUE}-poison", connection=CONNECTION)
def migrate_batch_poison(msg: func.QueueMessage) -> None:
    """A batch the host gave up on is recorded failed in the run."""
    from migrate import worker

    try:
        worker.handle_poison(json.loads(msg.get_body()), f"gave up after {MAX_DEQUEUE_COUNT} attempts")
    except (ValueError, BadRequest) as exc:
        log.error("dropped poison migration message %s: %s", msg.id, exc)
