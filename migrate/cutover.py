"""The cutover drill: freeze GCP, final incremental sync, verify, then switch.

1. Freeze: ``_cutover/frozen.json`` is written into the GCS bucket. From then the
   GCP API answers uploads with 503 (``frozen``) and GCP's upload trigger leaves
   new uploads alone: they are deferred, not lost, since the final sync copies
   them and Azure processes them.
2. Final sync: ``migrate copy`` copies only what changed since the bulk copy.
3. Verify: names, sizes, checksums, Content-Type and metadata.
4. Switch: point clients at the Azure API (printed; DNS or clients are yours).
5. Decommission the GCP side once Azure has served for a while.

``_cutover/`` itself is never copied.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

from core.pipeline import FREEZE_KEY
from core.ports import ObjectStore


def freeze(store: ObjectStore, reason: str = "moving to Azure") -> None:
    """Stop new jobs on this store (idempotent)."""
    record = {"reason": reason, "since": datetime.now(UTC).isoformat(timespec="seconds")}
    store.put(FREEZE_KEY, json.dumps(record).encode(), content_type="application/json")


def unfreeze(store: ObjectStore) -> None:
    """Take uploads again (a rolled-back cutover)."""
    store.delete(FREEZE_KEY)
