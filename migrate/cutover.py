"""The freeze marker on the source cloud: ``_cutover/frozen.json`` in the GCS bucket.

While it exists the GCP API answers uploads 503, and an upload written to the bucket after it is
left for Azure (``core.pipeline.accept_upload``). ``migrate.live`` drives the cutover around it
(drain, verify, switch, abort) and ``migrate.rollback`` the way back; docs/cutover.md has the whole
story. ``_cutover/`` itself is never copied.
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
