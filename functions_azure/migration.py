"""The migration's fan-out on Azure: one queue message per batch (logic in migrate/)."""

from __future__ import annotations

import azure.functions as func

from functions_azure.blueprint import queue_json
from functions_azure.settings import BATCH_QUEUE, CONNECTION, MAX_DEQUEUE_COUNT

bp = func.Blueprint()


@bp.function_name("migrate_batch")
@bp.queue_trigger(arg_name="msg", queue_name=BATCH_QUEUE, connection=CONNECTION)
def migrate_batch(msg: func.QueueMessage) -> None:
    """Copy one batch. Raising makes the host retry, then move it to the poison queue."""
    from core.clouds.azure_queue import AzureQueueTaskQueue  # the migration's SDKs load on its first batch
    from migrate import worker

    worker.handle_message(queue_json(msg), AzureQueueTaskQueue(BATCH_QUEUE), message_id=msg.id)


@bp.function_name("migrate_batch_poison")
@bp.queue_trigger(arg_name="msg", queue_name=f"{BATCH_QUEUE}-poison", connection=CONNECTION)
def migrate_batch_poison(msg: func.QueueMessage) -> None:
    """A batch the host gave up on is recorded failed in the run, and its lane goes on."""
    from core.clouds.azure_queue import AzureQueueTaskQueue
    from migrate import worker

    reason = f"gave up after {MAX_DEQUEUE_COUNT} attempts"
    worker.handle_dead_letter(queue_json(msg), reason, AzureQueueTaskQueue(BATCH_QUEUE), message_id=msg.id)
