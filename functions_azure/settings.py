"""Names the app's bindings, host.json and the services must agree on (a test checks it)."""

from __future__ import annotations

CONNECTION = "AzureWebJobsStorage"
"""The app setting with the storage account the triggers use."""
CONTAINER_SETTING = "AZURE_STORAGE_CONTAINER"
DEFAULT_CONTAINER = "grayscale"
JOBS_QUEUE = "grayscale-jobs"
POISON_QUEUE = f"{JOBS_QUEUE}-poison"
MAX_DEQUEUE_COUNT = 5
"""host.json extensions.queues.maxDequeueCount: the attempts before the host moves a message to the poison queue."""
BATCH_QUEUE = "migrate-batches"
"""The migration's fan-out queue (``migrate.fanout.BATCH_QUEUE``; a test checks they agree)."""
