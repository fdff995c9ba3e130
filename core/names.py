"""The one home of the names both clouds' resources share: topics, queues and their dead-letter paths.

The functions, the local stacks and the deploy scripts all read these, so a
renamed topic or queue cannot drift between them. On GCP each is a Pub/Sub
topic; on Azure the work queues are Storage Queues, with the host's
``<queue>-poison`` as their dead-letter path.
"""

from __future__ import annotations

NOTIFICATIONS_TOPIC = "gcs-notifications"
"""GCP: the bucket's OBJECT_FINALIZE notifications (Azure uses Event Grid)."""
JOBS = "grayscale-jobs"
"""The jobs topic (GCP) and queue (Azure): one message per upload."""
JOBS_DEAD_LETTER_TOPIC = f"{JOBS}-dead"
JOBS_POISON_QUEUE = f"{JOBS}-poison"
BATCHES = "migrate-batches"
"""The migration's fan-out topic (GCP) and queue (Azure): one message per batch."""
BATCHES_DEAD_LETTER_TOPIC = f"{BATCHES}-dead"
BATCHES_POISON_QUEUE = f"{BATCHES}-poison"
