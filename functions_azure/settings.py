"""Names the app's bindings, host.json and the services must agree on (a test checks it)."""

from __future__ import annotations

from core import names

HOST_CONNECTION = "AzureWebJobsStorage"
"""The host's own storage (keys, leases, the deployment package); deployed, an account of its own."""
CONNECTION = "DataStorage"
"""The connection the triggers and the code use: the data container and the app's queues. Deployed, it is an
identity-based connection of its own (``DataStorage__accountName``, ``__credential``, ``__clientId``); locally, a
connection string, and without one it falls back to ``AzureWebJobsStorage`` (one account, as ``func start`` has)."""
CONTAINER_SETTING = "AZURE_STORAGE_CONTAINER"
DEFAULT_CONTAINER = "grayscale"
JOBS_QUEUE = names.JOBS
POISON_QUEUE = names.JOBS_POISON_QUEUE
MAX_DEQUEUE_COUNT = 5
"""host.json extensions.queues.maxDequeueCount: the attempts before the host moves a message to the poison queue."""
BATCH_QUEUE = names.BATCHES
"""The migration's fan-out queue."""
