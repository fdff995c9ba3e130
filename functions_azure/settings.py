"""Names the app's bindings, host.json and the services must agree on (a test checks it)."""

from __future__ import annotations

from core import names

CONNECTION = "AzureWebJobsStorage"
"""The app setting with the storage account the triggers use."""
CONTAINER_SETTING = "AZURE_STORAGE_CONTAINER"
DEFAULT_CONTAINER = "grayscale"
JOBS_QUEUE = names.JOBS
POISON_QUEUE = names.JOBS_POISON_QUEUE
MAX_DEQUEUE_COUNT = 5
"""host.json extensions.queues.maxDequeueCount: the attempts before the host moves a message to the poison queue."""
BATCH_QUEUE = names.BATCHES
"""The migration's fan-out queue."""
