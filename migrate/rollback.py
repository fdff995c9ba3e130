"""The rollback: after the switch, hand the pipeline back to GCP with what Azure made since.

The steps (docs/migration.md), each safe to run again after a crash:

1. **Hold Azure**: ``_cutover/replica.json`` goes back into the container (written once, so its time stays).
   Azure answers uploads 503 and starts no job for an upload written after it; an upload written to Azure
   before it is still Azure's (``core.pipeline.accept_upload``).
2. **Settle**: wait until every job Azure started since the switch is DONE or FAILED. An upload Azure took
   before the hold but has no record for yet (its event is late) is accepted on Azure here.
3. **Copy back** to GCS every blob Azure wrote itself since the switch (no ``gcs_generation``): job records
   and results first, uploads last, so an upload's notification on GCS finds its job record there. Each copy
   is proven: the bytes read match the blob's Content-MD5, and GCS checks the MD5 of what it stored. The
   object records the blob's ETag (``azure_etag``): a run again skips it, and replication may write over
   that blob with its GCS copy.
4. **Switch back**: unfreeze GCP and accept there every upload either side left for the other while held
   (``live.abort``), then remove ``_cutover/switched.json``. Azure is a replica again and replication goes on,
   so a later ``cutover`` starts from here.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import time
import urllib.parse
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from core import names
from core.errors import Conflict, CoreError, NotFound
from core.jobs import JOBS_PREFIX, Job
from core.logs import redact
from core.pipeline import (
    DEFERRED_PREFIX,
    REPLICA_KEY,
    SWITCHED_KEY,
    UPLOADS,
    Services,
    accept_upload,
    written_before,
)
from core.ports import ObjectInfo, ObjectStore
from migrate import live
from migrate.runs import RUNS_PREFIX, run_key

log = logging.getLogger(__name__)

RECORD = "rollback.json"
"""The rollback's result, in the run record (``_migrations/<run>/rollback.json``)."""


@dataclass
class CopiedBack:
    """What the copy back did."""

    copied: int = 0
    skipped: int = 0
    bytes: int = 0
    failed: list[dict[str, str]] = field(default_factory=list)


def switched(records: ObjectStore) -> ObjectInfo | None:
    """``_cutover/switched.json`` (its ``updated`` is when Azure became the primary), or None."""
    try:
        return records.head(SWITCHED_KEY)
    except NotFound:
        return None


def hold(records: ObjectStore, run_id: str) -> ObjectInfo:
    """Make the container a replica again (written once: a second rollback keeps the first hold's time)."""
    record = {"run_id": run_id, "reason": "rolling back to GCS", "since": datetime.now(UTC).isoformat()}
    with contextlib.suppress(Conflict):
        records.put(REPLICA_KEY, json.dumps(record).encode(), content_type="application/json", if_none_match=True)
    return records.head(REPLICA_KEY)


def azure_own(info: ObjectInfo, since: datetime) -> bool:
    """True for a blob Azure wrote itself since ``since``: not a copy from GCS, not a marker nor a run record."""
    if info.key.startswith(("_cutover/", RUNS_PREFIX)) or info.metadata.get(names.MIGRATED_KEY):
        return False
    return info.updated is None or info.updated >= since


def settle(azure: Services, since: datetime, held: datetime, *, timeout: float = 120.0, grace: float = 2.0) -> int:
    """Wait until every job Azure started since ``since`` has ended; how many it waited for.

    Called right after the hold is written (``held`` is its time, on Azure's clock). An upload written
    to Azure between ``since`` and ``held`` is Azure's: one with no job record yet is accepted here (its
    event may come later; the job id is the same). A job record that an event which saw no hold may still
    write is waited for: the wait lasts at least ``grace`` seconds (measured here, not on Azure's clock).
    ``TransientError`` after ``timeout`` seconds, naming the jobs.
    """
    began = time.monotonic()
    # Every upload written before the hold is in one listing made after it: accept them once.
    uploads = [i for i in azure.store.list(UPLOADS) if azure_own(i, since)]
    before = [i.key for i in uploads if i.updated is None or written_before(i.updated, held, replica=True)]
    with ThreadPoolExecutor(max_workers=16) as pool:  # idempotent: the job its event makes, or made
        jobs = [job for job in pool.map(lambda key: accept_upload(azure, key), before) if job is not None]
    ended: dict[str, str] = {}  # job record key -> the version read DONE or FAILED
    waited: set[str] = {job.id for job in jobs if not job.terminal}
    while True:
        running = _running(azure, since, ended)
        waited.update(running)
        if not running and time.monotonic() - began >= grace:
            return len(waited)
        if time.monotonic() - began > timeout:
            raise live.NotSettled(
                f"{len(running)} job(s) Azure started are still running after {timeout:.0f} s "
                f"(is the Azure worker up?): {', '.join(sorted(running)[:5])}"
            )
        time.sleep(0.2)


def _running(azure: Services, since: datetime, ended: dict[str, str]) -> list[str]:
    """The jobs Azure wrote since ``since`` that are not DONE or FAILED (reading only the records that changed)."""
    running = []
    for info in azure.store.list(JOBS_PREFIX):
        if not azure_own(info, since) or ended.get(info.key) == info.version:
            continue
        try:
            found = azure.store.get(info.key)
        except NotFound:
            continue
        try:
            terminal = Job.from_json(found.data).terminal
        except CoreError:
            terminal = True  # not a job record: nothing runs it
        if terminal:
            ended[info.key] = found.info.version
        else:
            running.append(info.key[len(JOBS_PREFIX) :].removesuffix(".json"))
    return running


def copy_back(
    records: ObjectStore, bucket: ObjectStore, run: live.Live, since: datetime, *, workers: int = 16
) -> CopiedBack:
    """Copy to GCS every blob Azure wrote itself since ``since``: uploads last, everything else first."""
    chosen = [i for i in records.list(run.dest_prefix) if azure_own(i, since)]
    uploads = run.dest_prefix + UPLOADS
    result = CopiedBack()
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for batch in (
            [i for i in chosen if not i.key.startswith(uploads)],
            [i for i in chosen if i.key.startswith(uploads)],
        ):
            for key, outcome, size in pool.map(lambda i: _copy_one(records, bucket, run, i), batch):
                if outcome == "copied":
                    result.copied += 1
                    result.bytes += size
                elif outcome == "skipped":
                    result.skipped += 1
                else:
                    result.failed.append({"key": key, "reason": outcome})
            if result.failed:
                break  # no upload goes back before its job record
    return result


def _copy_one(records: ObjectStore, bucket: ObjectStore, run: live.Live, info: ObjectInfo) -> tuple[str, str, int]:
    """One blob to its GCS key; ``(key, "copied" | "skipped" | a reason, bytes)``. Never raises for one object."""
    key = run.source_prefix + info.key[len(run.dest_prefix) :]
    try:
        with contextlib.suppress(NotFound):
            if bucket.head(key).metadata.get(names.RESTORED_KEY) == info.version:
                return key, "skipped", 0
        found = records.get(info.key)
        md5 = hashlib.md5(found.data).hexdigest()
        if found.info.md5 and found.info.md5 != md5:
            return key, f"the bytes read hash to {md5}, the blob's Content-MD5 is {found.info.md5}", 0
        metadata = {**found.info.metadata, names.RESTORED_KEY: found.info.version}
        written = bucket.put(key, found.data, content_type=found.info.content_type, metadata=metadata)
        if written.md5 is not None and written.md5 != md5:
            return key, f"GCS stored bytes that hash to {written.md5}, not {md5}", 0
        return key, "copied", len(found.data)
    except CoreError as exc:
        return key, redact(str(exc)), 0


def switch_back(gcp: Services, records: ObjectStore, run: live.Live) -> int:
    """Unfreeze GCP, accept there what either side left for the other, then drop the switch marker.

    The marker goes last: a rollback stopped before it is run again from the start, and each step before
    it is idempotent. Returns how many uploads GCP accepted.
    """
    accepted = live.abort(gcp)
    for entry in list(records.list(DEFERRED_PREFIX)):
        blob = urllib.parse.unquote(entry.key[len(DEFERRED_PREFIX) :])
        if blob.startswith(run.dest_prefix) and accept_upload(gcp, run.source_prefix + blob[len(run.dest_prefix) :]):
            accepted += 1
        records.delete(entry.key)
    with contextlib.suppress(NotFound):
        records.delete(SWITCHED_KEY)
    return accepted


def rollback(
    gcp: Services, azure: Services, run: live.Live, *, timeout: float = 120.0, grace: float = 2.0, by: str = ""
) -> dict[str, Any]:
    """The whole rollback (steps 1-4 above); its record, also written into the run. ``CoreError`` on failure.

    ``gcp.store`` is the bucket and ``azure.store`` the container (which holds the run record). A copy that
    fails stops it before the switch back: GCP stays frozen and Azure held, and running it again goes on.
    """
    records = azure.store
    marker = switched(records)
    if marker is None or marker.updated is None:
        raise NotFound(f"{SWITCHED_KEY} is not in the container: Azure never became the primary")
    began = time.monotonic()
    held = hold(records, run.run_id)
    assert held.updated is not None
    waited = settle(azure, marker.updated, held.updated, timeout=timeout, grace=grace)
    settled = time.monotonic()
    copied = copy_back(records, gcp.store, run, marker.updated)
    copied_at = time.monotonic()
    result: dict[str, Any] = {
        "run_id": run.run_id,
        "by": by,
        "rolled_back": not copied.failed,
        "since_switch": marker.updated.isoformat(),
        "azure_jobs_waited": waited,
        "copied_back": copied.copied,
        "skipped": copied.skipped,
        "bytes": copied.bytes,
        "failed": copied.failed[:20],
    }
    if copied.failed:
        return result
    result["accepted"] = switch_back(gcp, records, run)
    result["frozen_seconds"] = round(time.monotonic() - began, 3)
    result["seconds"] = {"settle": round(settled - began, 3), "copy_back": round(copied_at - settled, 3),
                         "switch_back": round(time.monotonic() - copied_at, 3)}  # fmt: skip
    records.put(run_key(run.run_id, RECORD), json.dumps(result).encode(), content_type="application/json")
    return result


def last(records: ObjectStore, run_id: str) -> dict[str, Any] | None:
    """The record of a rollback that finished, or None."""
    try:
        return dict(json.loads(records.get(run_key(run_id, RECORD)).data))
    except NotFound:
        return None
