"""Live sync: replication during a migration, the cutover that only drains it, and the abort.

The rules that decide which cloud processes an upload are ``core.pipeline.accept_upload``'s; this
module moves the data and the markers (docs/migration.md):

- ``_cutover/live.json`` in the bucket: replication is on, for one run into one container.
- ``_cutover/replica.json`` in the container: Azure is a replica, it takes no upload and starts no job.
- ``_cutover/frozen.json`` in the bucket: the freeze. Its time splits the uploads between the clouds.
- ``_cutover/barrier/<id>`` in the bucket, written after the freeze: once its notification has been
  replicated and no replication that started before it is still running, replication has drained.

The run record (``_migrations/<run_id>/`` in the container) gains
``replication/changes/<minute>/<ten seconds>/<message id>~<lag ms>`` (key and generation: one write per copy,
before it; the cutover verifies these keys, the status reads the lags from the listing alone, and the drain waits
until Azure holds each generation), ``replication/inflight/<message id>`` (a copy that failed and waits for a
retry, or a delete under way), ``replication/barriers/<id>``, ``replication/deletes/`` (reported deletes) and
``replication/failed/``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
import urllib.parse
import uuid
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from core import names
from core.errors import BadRequest, NotFound, TransientError
from core.jobs import JOBS_PREFIX
from core.pipeline import FREEZE_KEY, REPLICA_KEY, SWITCHED_KEY, Services, accept_deferred, is_upload
from core.ports import Destination, ObjectDetails, ObjectInfo, ObjectStore, ReplicationFeed, Source
from migrate import rules
from migrate.copy import Options, copy_entry, dest_key_for, existing_blob, fresh_details, is_current, up_to_date
from migrate.runs import CHANGES, FAILED, INFLIGHT, RUNS_PREFIX, change_folder, change_name, exists, run_key
from migrate.verify import compare_bytes, compare_properties

log = logging.getLogger(__name__)

LIVE_KEY = "_cutover/live.json"
BARRIER_PREFIX = "_cutover/barrier/"
DELETES = ("report", "replicate")
FOLDER_MARGIN = timedelta(seconds=10)


class NotSettled(TransientError):
    """Replication did not drain, or the jobs a rollback waits for did not end, in the time given."""


@dataclass(frozen=True)
class Live:
    """What ``_cutover/live.json`` says: replication is on for this run."""

    run_id: str
    container: str
    source_prefix: str = ""
    dest_prefix: str = ""
    deletes: str = "report"
    since: str = ""
    feed: str = ""
    """``made`` when ``plan --live`` made the replication feed (``finish`` removes it), else managed elsewhere."""

    def blob_name(self, key: str, options: Options) -> str | None:
        """The blob a source key is copied to (None for a name Azure would reject, without ``encode_names``)."""
        target, _ = dest_key_for(self.dest_prefix + key[len(self.source_prefix) :], options)
        return target


@dataclass(frozen=True)
class Change:
    """One bucket notification, as the replicate function gets it."""

    key: str
    change: str = "OBJECT_FINALIZE"
    """OBJECT_FINALIZE or OBJECT_DELETE."""
    generation: str | None = None
    message_id: str = ""
    details: ObjectDetails | None = None
    """The object as the notification described it (GCS sends its whole resource): no listing is needed."""
    attempt: int | None = None
    """Which delivery of the notification this is, when Pub/Sub says (1: the first, so no retry left a marker)."""


def start(bucket: ObjectStore, records: ObjectStore, live: Live, source_uri: str) -> None:
    """Make the container a replica, then turn replication on (in that order: Azure never starts a job)."""
    if live.deletes not in DELETES:
        raise BadRequest(f"--live-deletes must be one of {', '.join(DELETES)}, not {live.deletes!r}")
    since = datetime.now(UTC).isoformat(timespec="seconds")
    replica = {"run_id": live.run_id, "reason": f"a replica of {source_uri} until the switch", "since": since}
    records.put(REPLICA_KEY, json.dumps(replica).encode(), content_type="application/json")
    record = asdict(live) | {"since": since}
    try:
        bucket.put(LIVE_KEY, json.dumps(record).encode(), content_type="application/json")
    except BaseException:
        # Nothing replicates: a replica marker left behind would make Azure refuse every upload for nothing.
        clear_orphaned_replica(bucket, records, run_id=live.run_id)
        raise


def go_live(
    bucket: ObjectStore,
    records: ObjectStore,
    feed: ReplicationFeed | None,
    live: Live,
    source_uri: str,
    *,
    timeout: float = 60.0,
) -> Live:
    """Open the replication feed, make the container a replica, turn replication on, then wait until a probe written
    after all that has been replicated: from then on every change reaches replication, so the bulk listing that
    follows leaves no gap (a new bucket notification may take a while to deliver). The live run as recorded.

    ``feed`` None: it is managed elsewhere (made by hand, or by infrastructure code). Anything that fails undoes what
    was done, so nothing is left half live: ``NotSettled`` when the probe did not arrive in ``timeout`` seconds.
    """
    made = feed.open() if feed is not None else False
    live = replace(live, feed="made" if made else "")
    try:
        start(bucket, records, live, source_uri)
        try:
            drain(bucket, records, live.run_id, timeout=timeout)  # the probe is a barrier
        except NotSettled as exc:
            raise NotSettled(f"the replication feed delivered nothing in {timeout:.0f} s (is migrate_replicate "
                             f"deployed and subscribed?); nothing was started") from exc  # fmt: skip
    except BaseException:
        with contextlib.suppress(NotFound):
            bucket.delete(LIVE_KEY)
        clear_orphaned_replica(bucket, records, run_id=live.run_id)
        if made and feed is not None:
            feed.close()
        raise
    return live


def clear_orphaned_replica(bucket: ObjectStore, records: ObjectStore, *, run_id: str | None = None) -> bool:
    """Remove the container's replica marker when no live run of the bucket replicates into it (a go-live whose
    bucket write failed); with ``run_id``, only that run's marker. True when one was removed."""
    try:
        marker = json.loads(records.get(REPLICA_KEY).data)
    except NotFound:
        return False
    except ValueError:
        marker = {}
    if run_id is not None and marker.get("run_id") != run_id:
        return False
    running = live_run(bucket) if run_id is None else None
    if running is not None and running.run_id == marker.get("run_id"):
        return False  # a live run's marker: not an orphan
    with contextlib.suppress(NotFound):
        records.delete(REPLICA_KEY)
    return True


def live_run(bucket: ObjectStore) -> Live | None:
    """The live run of this bucket, or None when replication is off."""
    try:
        return Live(**json.loads(bucket.get(LIVE_KEY).data))
    except NotFound:
        return None
    except (ValueError, TypeError) as exc:
        raise BadRequest(f"{LIVE_KEY} is not a live-sync record: {exc}") from exc


def replicate(
    change: Change,
    bucket: ObjectStore,
    source: Source,
    dest: Destination,
    records: ObjectStore,
    live: Live,
    *,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> str:
    """Copy one changed object with the bulk copy's routine; what was done (``copied``, ``skipped``, ...).

    Duplicate and out-of-order notifications are harmless: the object's current details are read
    again, and a blob is written only if it holds an older generation (a conditional write on its
    ETag, so two writers cannot race). A failure raises, so the platform delivers again.
    """
    key = change.key
    if key.startswith(BARRIER_PREFIX):
        records.put(run_key(live.run_id, "replication/barriers/" + key[len(BARRIER_PREFIX) :]), b"")
        return "barrier"
    if key.startswith(("_cutover/", RUNS_PREFIX)) or not key.startswith(live.source_prefix):
        return "ignored"
    if change.change == "OBJECT_FINALIZE" and change.details is not None and change.details.key == key:
        obj: ObjectDetails | None = change.details  # a stale one is harmless: its read or its write finds it so
    else:
        obj = fresh_details(source, key)
    if obj is not None and change.change == "OBJECT_FINALIZE" and _older(change.generation, obj.generation):
        return "superseded"  # a newer generation is there: its own notification copies it
    if obj is not None and change.details is not None and key.startswith(JOBS_PREFIX) and _gone(source, obj):
        return "superseded"  # a job record is written three times in a second: the later writes' notifications copy it
    message_id = change.message_id or uuid.uuid4().hex
    inflight = run_key(live.run_id, f"{INFLIGHT}{_safe(message_id)}")
    if obj is None:
        records.put(inflight, key.encode(), content_type="text/plain")
        action = _deleted(change, dest, records, live)
        records.delete(inflight)
        return action
    frozen_at = _freeze_time(bucket) if is_upload(key) else None
    tags = {}
    if frozen_at is not None and is_upload(key) and obj.created is not None and obj.created >= frozen_at:
        tags[names.DEFERRED_KEY] = frozen_at.isoformat()  # written after the freeze: Azure processes it
    options = Options(tags=tags)
    target = live.blob_name(key, options)
    current = existing_blob(dest)(target) if target else None
    # What writes nothing is decided before the change record, so it writes nothing at all.
    if current is not None and not current.metadata.get(rules.GENERATION_KEY):
        if obj.metadata.get(names.RESTORED_KEY) != current.version:
            # The target wrote it itself (it has switched): a late write on the source never overwrites it.
            log.warning("kept %s: the target wrote it itself; the source's later write is not copied over it", key)
            return "kept"
        # A rollback copied this blob back: write its copy over it (the same bytes, now with the generation),
        # so that the object's later writes reach it. The write is still conditional on the blob's ETag.
        current = replace(current, md5=None)
    elif up_to_date(obj, current, options):
        return "skipped"  # a duplicate notification, or a later generation got there first
    # The copy's one bookkeeping write, before it: what the cutover verifies, the lag (to the start of the copy), and
    # for the drain a copy under way until Azure holds this generation (``settled``).
    lag_ms = max(0, int((now() - obj.created).total_seconds() * 1000)) if obj.created else 0
    body = f"{key}\n{obj.generation or ''}".encode()
    record = run_key(live.run_id, f"{CHANGES}{change_folder(now())}{_safe(message_id)}~{lag_ms}")
    # The key and generation also as metadata: the cutover and the drain read them from one listing.
    records.put(record, body, content_type="text/plain", metadata={"key": key, "generation": obj.generation or ""})
    outcome = copy_entry(source, dest, obj, lambda name: current if name == target else existing_blob(dest)(name),
                         options, source_prefix=live.source_prefix, dest_prefix=live.dest_prefix)  # fmt: skip
    if outcome.action == "failed":
        now_obj = fresh_details(source, key)
        if now_obj is not None and now_obj.generation == obj.generation:
            # Pending (the status counts it) until a retry copies it or the dead letter records it failed.
            records.put(inflight, body, content_type="text/plain")
            raise TransientError(f"replicating {key} failed: {outcome.error}")
        outcome.action = "superseded"  # rewritten or deleted meanwhile: that change's own notification copies it
    if change.attempt != 1:  # a retry (or a delivery that does not say): an earlier attempt may have left a marker
        with contextlib.suppress(NotFound):
            records.delete(inflight)
    return outcome.action


def _gone(source: Source, obj: ObjectDetails) -> bool:
    """Whether the object's generation has been overwritten: a one-byte read (GCS class B), checked by the
    generation it answers with, and a second, pinned to that generation, when it answers with another."""
    if not obj.generation or not obj.size:
        return False
    try:
        source.read_range(obj.key, obj.generation, 0, 0)
    except NotFound:
        return True
    return False


def fail(change: Change, records: ObjectStore, live: Live, reason: str) -> None:
    """The dead letter: the replication is recorded failed, and no longer pending."""
    record = {"key": change.key, "reason": reason}
    name = _safe(change.message_id or uuid.uuid4().hex)
    records.put(run_key(live.run_id, f"{FAILED}{name}.json"), json.dumps(record).encode())
    with contextlib.suppress(NotFound):
        records.delete(run_key(live.run_id, f"{INFLIGHT}{name}"))


@dataclass(frozen=True)
class Drained:
    seconds: float
    keys: frozenset[str]
    """The keys whose replication began before the barrier (and after ``since``): what the cutover verifies while
    frozen. A change after the barrier is an upload left for Azure, or a job GCP ends meanwhile: replication
    goes on after the switch and copies it."""


@dataclass(frozen=True)
class _Recorded:
    """A replication recorded in the run record: a change record (``CHANGES``) or a pending marker (``INFLIGHT``)."""

    name: str
    key: str
    generation: str

    @property
    def message(self) -> str:
        return change_name(self.name)[0] if CHANGES in self.name else self.name.rsplit("/", 1)[-1]


def drain(
    bucket: ObjectStore,
    records: ObjectStore,
    run_id: str,
    *,
    timeout: float = 60.0,
    since: datetime | None = None,
    settled: Callable[[str, str], bool] | None = None,
) -> Drained:
    """Write a barrier after the freeze and wait until replication has drained.

    Drained: the barrier's own notification has been replicated, and every replication that started
    before the barrier was written (and after ``since``) has ended: each change recorded then is
    ``settled(key, generation)`` (Azure holds that generation or a newer one, or the source has moved on)
    or given up (the dead letter recorded it failed), and no delete begun before it is still under way.
    A copy that failed and waits for a retry is not settled, so it is waited for too. ``TransientError``
    after ``timeout`` seconds. Without ``settled`` (going live: nothing is recorded before the barrier)
    only the barrier and the deletes are waited for.

    The change records are listed once, when the barrier has arrived (a record written later has a later time),
    and of each key only the newest generation is waited for: once it has settled, so have the older ones.
    """
    began = time.monotonic()
    barrier = uuid.uuid4().hex
    written = bucket.put(BARRIER_PREFIX + barrier, b"", content_type="text/plain").updated or datetime.now(UTC)
    reached = run_key(run_id, f"replication/barriers/{barrier}")
    proven: set[str] = set()  # records found ended: not read again
    recorded: list[_Recorded] | None = None
    newest: list[_Recorded] = []
    waiting: list[str] = []
    arrived = False
    with ThreadPoolExecutor(max_workers=16) as pool:
        while time.monotonic() - began < timeout:
            arrived = arrived or exists(records, reached)
            if arrived:
                if recorded is None:
                    recorded = _recorded(records, run_id, since or written, written, pool) if settled else []
                    newest = _newest(recorded)
                waiting = _under_way(records, run_id, newest, written, settled, proven, pool)
                if not waiting:
                    with contextlib.suppress(NotFound):
                        bucket.delete(BARRIER_PREFIX + barrier)
                    return Drained(time.monotonic() - began, frozenset(r.key for r in recorded))
            time.sleep(0.05)
    why = (f"{len(waiting)} replication(s) that started before it have not ended (failing and retried?)"
           if arrived else "its barrier was never replicated: is the replicate function running?")  # fmt: skip
    raise NotSettled(f"replication did not drain in {timeout:.0f} s: {why}")


def _under_way(
    records: ObjectStore,
    run_id: str,
    changes: list[_Recorded],
    before: datetime,
    settled: Callable[[str, str], bool] | None,
    proven: set[str],
    pool: ThreadPoolExecutor,
) -> list[str]:
    """The records of replications begun before ``before`` that have not ended: of ``changes``, and the pending
    markers (a failed copy waiting for its retry, a delete under way), listed each time."""
    markers = [i.key for i in records.list(run_key(run_id, INFLIGHT)) if (i.updated or before) < before]

    def ended(item: _Recorded | str) -> bool:
        if isinstance(item, str):
            marker = _read(records, item)
            if marker is None:
                return True  # a marker removed: that replication ended
            if not marker.generation or settled is None:
                return False  # a delete under way: its marker goes when it ends
            item = marker
        if settled is not None and settled(item.key, item.generation):
            return True
        return exists(records, run_key(run_id, f"{FAILED}{item.message}.json"))  # given up: recorded failed

    todo = [c for c in changes if c.name not in proven] + [m for m in markers if m not in proven]
    waiting = []
    for item, done in zip(todo, pool.map(ended, todo), strict=True):
        name = item if isinstance(item, str) else item.name
        if done:
            proven.add(name)
        else:
            waiting.append(name)
    return waiting


def _recorded(
    records: ObjectStore, run_id: str, since: datetime, before: datetime | None, pool: ThreadPoolExecutor
) -> list[_Recorded]:
    """The change records written in ``[since, before)``, with the key and generation from the listing (a record
    without them in its metadata is read)."""
    infos = [i for i in _changes(records, run_id, since)
             if i.updated is None or (i.updated >= since and (before is None or i.updated < before))]  # fmt: skip

    def read(info: ObjectInfo) -> _Recorded | None:
        if "key" in info.metadata:
            return _Recorded(info.key, info.metadata["key"], info.metadata.get("generation", ""))
        return _read(records, info.key)

    return [r for r in pool.map(read, infos) if r is not None and r.key]


def _read(records: ObjectStore, name: str) -> _Recorded | None:
    """A change record or pending marker read from its body (the key, then the generation, on two lines); None when
    it is gone."""
    try:
        key, _, generation = records.get(name).data.decode().partition("\n")
    except NotFound:
        return None
    return _Recorded(name, key, generation)


def _newest(recorded: Iterable[_Recorded]) -> list[_Recorded]:
    """Of each key, the change record of its newest generation."""
    newest: dict[str, _Recorded] = {}
    for one in recorded:
        if one.key not in newest or _older(newest[one.key].generation, one.generation):
            newest[one.key] = one
    return list(newest.values())


def settled_by(source: Source, dest: Destination, live: Live) -> Callable[[str, str], bool]:
    """``settled(key, generation)`` for ``drain``: Azure's blob holds that generation or a newer one, or the object
    is gone or rewritten in the bucket since (that change is its own replication)."""

    def settled(key: str, generation: str) -> bool:
        target = live.blob_name(key, Options())
        blob = existing_blob(dest)(target) if target else None
        if blob is not None and not blob.metadata.get(rules.GENERATION_KEY):
            return True  # Azure wrote it itself: replication keeps it
        if is_current(ObjectDetails(key, 0, generation=generation), blob):  # that generation or a newer one
            return True
        now = fresh_details(source, key)
        return now is None or now.generation != generation

    return settled


def changed_keys(records: ObjectStore, run_id: str, since: datetime) -> set[str]:
    """The keys whose replication began since ``since``: what the cutover verifies (read from the run record, not
    the bucket)."""
    with ThreadPoolExecutor(max_workers=16) as pool:
        return {r.key for r in _recorded(records, run_id, since, None, pool)}


def _changes(records: ObjectStore, run_id: str, since: datetime) -> Iterator[ObjectInfo]:
    """The change records from the ten seconds before ``since``'s to now: one listing per ten seconds up to the
    next whole minute, then one per minute (``runs.change_folder``). A record is filed by its function's clock:
    the folder before is a margin for a clock behind this one's; the caller's filter on the write time decides."""
    at, now = (since - FOLDER_MARGIN).astimezone(UTC).replace(microsecond=0), datetime.now(UTC)
    at = at.replace(second=at.second // 10 * 10)
    while at <= now:
        whole = at.second == 0
        yield from records.list(run_key(run_id, CHANGES + change_folder(at, minute=whole)))
        at += timedelta(minutes=1) if whole else timedelta(seconds=10)


def verify_keys(
    source: Source, dest: Destination, keys: Iterable[str], live: Live, *, patience: float = 0.0
) -> dict[str, Any]:
    """Compare each named object with its blob: bytes (size and checksums) and every property the copy keeps.

    With ``patience``, a key that differs is compared again every quarter of a second for up to that many seconds:
    while uploads go on, an object changed a moment ago differs until its replication lands, and only a
    difference that outlasts the patience is one. ``same_keys`` names the objects found the same, ``problems`` at
    most 20 of those that differ.
    """
    found = _verify_once(source, dest, keys, live)
    deadline = time.monotonic() + patience
    while found["problems"] and time.monotonic() < deadline:
        time.sleep(0.25)
        again = _verify_once(source, dest, [p["key"] for p in found["problems"]], live)
        found = {"same": found["same"] + again["same"], "same_keys": found["same_keys"] + again["same_keys"],
                 "different": again["different"], "problems": again["problems"]}  # fmt: skip
    return {**found, "problems": found["problems"][:20]}


def _verify_once(source: Source, dest: Destination, keys: Iterable[str], live: Live) -> dict[str, Any]:
    problems: list[dict[str, Any]] = []
    same: list[str] = []

    def check(key: str) -> dict[str, Any] | None:
        obj = fresh_details(source, key)
        if obj is None:
            return None  # deleted since: a reported delete, not a difference
        target = live.blob_name(key, Options(encode_names=True))
        try:
            blob = dest.head(target or key)
        except NotFound:
            return {"key": key, "problems": ["missing"]}
        found = compare_bytes(obj, blob) + compare_properties(obj, blob)
        return {"key": key, "problems": found} if found else {}

    with ThreadPoolExecutor(max_workers=16) as pool:
        ordered = sorted(keys)
        for key, result in zip(ordered, pool.map(check, ordered), strict=True):
            if result:
                problems.append(result)
            elif result is not None:
                same.append(key)
    return {"same": len(same), "same_keys": same, "different": len(problems), "problems": problems}


def switch(azure: Services, freeze: ObjectStore, records: ObjectStore) -> int:
    """Make Azure the primary: say which freeze it ends, lift the replica marker, accept what was left for it.

    The marker goes first, the journal is read after: an upload journalled meanwhile is found by one
    or the other (``core.pipeline._left_for_the_other_side``). Returns how many uploads were accepted.
    """
    frozen_at = _freeze_time(freeze)
    marker = {"freeze": frozen_at.isoformat() if frozen_at else None, "at": datetime.now(UTC).isoformat()}
    records.put(SWITCHED_KEY, json.dumps(marker).encode(), content_type="application/json")
    with contextlib.suppress(NotFound):
        records.delete(REPLICA_KEY)
    return len(accept_deferred(azure))


def abort(gcp: Services) -> int:
    """Before the switch: unfreeze GCP and accept there what its frozen trigger left; Azure stays a replica."""
    with contextlib.suppress(NotFound):
        gcp.store.delete(FREEZE_KEY)
    return len(accept_deferred(gcp))


def _deleted(change: Change, dest: Destination, records: ObjectStore, live: Live) -> str:
    target = live.blob_name(change.key, Options(encode_names=True)) or change.key
    if live.deletes == "replicate":
        try:
            blob = dest.head(target)
        except NotFound:
            return "gone"
        recorded = blob.metadata.get(rules.GENERATION_KEY) or ""
        newer = (
            recorded.isdigit() and (change.generation or "").isdigit() and int(recorded) > int(change.generation or 0)
        )
        if newer:
            return "skipped"  # a newer generation was written after this delete
        with contextlib.suppress(NotFound):
            dest.delete(target)
        return "deleted"
    record = {"key": change.key, "generation": change.generation, "at": datetime.now(UTC).isoformat()}
    name = urllib.parse.quote(change.key, safe="")[:900]
    records.put(run_key(live.run_id, f"replication/deletes/{name}"), json.dumps(record).encode())
    return "delete-reported"


def _older(event: str | None, current: str | None) -> bool:
    """True when the notification's generation is older than the object's current one."""
    return bool(event and current and event.isdigit() and current.isdigit() and int(event) < int(current))


def _freeze_time(bucket: ObjectStore) -> datetime | None:
    try:
        return bucket.head(FREEZE_KEY).updated
    except NotFound:
        return None


def _safe(name: str) -> str:
    return urllib.parse.quote(name, safe="")[:200]
