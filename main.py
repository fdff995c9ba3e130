"""GCP entry file at the source root, for `gcloud functions deploy --source .` and
`functions-framework --target NAME`: it re-exports the functions_gcp entry points."""

from functions_gcp.main import api, migrate_batch, migrate_batch_dead_letter, on_dead_letter, on_upload, process_job

__all__ = ["api", "migrate_batch", "migrate_batch_dead_letter", "on_dead_letter", "on_upload", "process_job"]
