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
REPLICATION = "migrate-replication"
"""GCP: the bucket notifications that drive live replication to Azure during a migration (locally, the
emulator publishes to one topic only, so replication subscribes to ``NOTIFICATIONS_TOPIC``)."""
REPLICATION_DEAD_LETTER_TOPIC = f"{REPLICATION}-dead"

MIGRATED_KEY = "gcs_generation"
"""Blob metadata of a copy from GCS: the source generation (a copied upload is the source cloud's to process)."""
DEFERRED_KEY = "gcs_deferred"
"""Blob metadata of a copied upload written to GCS after the freeze (the freeze time): the target processes it."""
RESTORED_KEY = "azure_etag"
"""GCS metadata of an object a rollback copied back from Azure: the ETag of the blob it came from. Replication
may write over that blob (it holds the same bytes), so that the object's later writes on GCS reach Azure."""
