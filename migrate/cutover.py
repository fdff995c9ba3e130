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

import contextlib
import json
from datetime import UTC, datetime

from core.errors import Conflict
from core.pipeline import FREEZE_KEY
from core.ports import ObjectInfo, ObjectStore


def freeze(store: ObjectStore, reason: str = "moving to Azure") -> ObjectInfo:
    """Stop new uploads on this store; the marker's info (its ``updated`` is the freeze time).

    Written once: freezing again keeps the first marker, so the time that decides which cloud
    processes an upload (``core.pipeline.accept_upload``) never moves.
    """
    record = {"reason": reason, "since": datetime.now(UTC).isoformat(timespec="seconds")}
    with contextlib.suppress(Conflict):  # frozen already
        store.put(FREEZE_KEY, json.dumps(record).encode(), content_type="application/json", if_none_match=True)
    return store.head(FREEZE_KEY)


def unfreeze(store: ObjectStore) -> None:
    """Take uploads again (a rolled-back cutover)."""
    store.delete(FREEZE_KEY)
