"""GCP entry file at the source root, for `gcloud functions deploy --source .` and
`functions-framework --target NAME`.

Each target is imported on first access from the module that holds it, so a
function instance loads only what its own target needs (a cold start of
``process_job`` never loads the migration, nor the Pub/Sub client).
"""

from __future__ import annotations

import importlib
from typing import Any

TARGETS = {
    "on_upload": "functions_gcp.pipeline",
    "process_job": "functions_gcp.pipeline",
    "on_dead_letter": "functions_gcp.pipeline",
    "api": "functions_gcp.pipeline",
    "migrations": "functions_gcp.migration",
    "migrate_batch": "functions_gcp.migration",
    "migrate_batch_dead_letter": "functions_gcp.migration",
    "migrate_replicate": "functions_gcp.migration",
    "migrate_replicate_dead_letter": "functions_gcp.migration",
}
__all__ = list(TARGETS)


def __getattr__(name: str) -> Any:
    module = TARGETS.get(name)
    if module is None:
        raise AttributeError(f"main has no entry point {name!r}; the entry points are {', '.join(TARGETS)}")
    return getattr(importlib.import_module(module), name)
