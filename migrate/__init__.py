"""The GCS to Azure Blob migration: plan, copy, verify, report; ``python -m migrate``."""
