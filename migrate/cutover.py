"""The live migration's steps after the copy: one function each, called by every entry point (CLI, HTTP).

- ``cutover``: freeze GCP, drain replication, verify what it copied, switch: Azure becomes the primary.
- ``abort``: before the switch, unfreeze GCP; Azure stays a replica and replication goes on.
- ``rollback``: after the switch, hand the pipeline back to GCP (its steps are ``migrate.rollback``'s).
- ``finish``: end replication after a cutover or an abort, and with it the way back.

Each takes the ``Sides`` it acts on and reports progress through ``progress(text)``; none prints. A step that the
run's state does not allow raises ``Refused`` and changes nothing (the CLI exits 2, HTTP answers 409). A step that
began but could not end returns a result that says why, and leaves the markers as docs/migration.md says (exit 1);
a cloud failing a request raises ``TransientError`` (exit 1: run the step again). Every step is safe to run again.

The markers: ``_cutover/frozen.json`` in the bucket (uploads to GCP answer 503, and one written after it is left for
Azure, ``core.pipeline.accept_upload``), ``_cutover/live.json`` in the bucket (replication is on), and in the
container ``_cutover/replica.json`` (Azure takes no upload) and ``_cutover/switched.json`` (Azure is the primary).
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from core.errors import Conflict, NotFound, Refused
from core.pipeline import FREEZE_KEY, REPLICA_KEY, SWITCHED_KEY, Services
from core.ports import Destination, ObjectInfo, ObjectStore, ReplicationFeed, Source, TaskQueue
from migrate import live, runs
from migrate.locations import Location

PRE_FREEZE_PASSES = 5
FEW_CHANGES = 50
"""Before the freeze the cutover verifies what replication copied, pass after pass (at most ``PRE_FREEZE_PASSES``,
at least 2) until a pass finds at most ``FEW_CHANGES`` objects replicated since the one before: the verify
while frozen then has about as few left."""
FROZEN_PATIENCE_S = 10.0
"""While frozen, how long the cutover compares again an object that differs (a change the drain did not cover)."""
FINISHED_KEY = "_cutover/finished.json"
"""In the bucket: which run ``finish`` ended (a later ``plan --live`` removes it)."""
BOOKKEEPING = (runs.INFLIGHT, runs.CHANGES, "replication/barriers/", "manifests/", "released")
"""What ``finish`` removes from the run record; the plan, the batches' outcomes, the reported deletes and failures,
and the steps' reports stay."""

Progress = Callable[[str], None]


def _quiet(_: str) -> None:
    pass


@dataclass(frozen=True)
class Sides:
    """What the steps act on: the bucket and the container as stores, each cloud's job queue, and for the
    cutover's verify the bucket as a copy source and the container as a destination."""

    source_at: Location
    dest_at: Location
    bucket: ObjectStore
    records: ObjectStore
    gcp_jobs: TaskQueue
    azure_jobs: TaskQueue
    source: Source | None = None
    dest: Destination | None = None
    feed: ReplicationFeed | None = None
    """The bucket's replication feed: ``finish`` removes it when ``plan --live`` made it."""

    def gcp(self) -> Services:
        return Services.over(self.bucket, self.gcp_jobs)

    def azure(self) -> Services:
        """Azure's pipeline as the switch and the rollback see it: held while the replica marker is there."""
        services = Services.over(self.records, self.azure_jobs)
        services.hold_key = REPLICA_KEY
        return services

    def live_run(self, run_id: str | None = None) -> live.Live:
        """The live run of the bucket into this container; ``Refused`` when there is none (or not ``run_id``)."""
        running = live.live_run(self.bucket)
        if running is None or running.container != self.dest_at.container:
            ended = _finished(self.bucket)
            if ended is not None:
                raise Refused(f"run {ended.get('run_id')} was finished at {ended.get('at')}: replication has ended "
                              f"and there is no way back")  # fmt: skip
            raise Refused(f"no live run replicates {self.source_at} to {self.dest_at}: start one with `plan --live`")
        if run_id and run_id != running.run_id:
            raise Refused(f"run {run_id} is not the live run of {self.source_at} (that is {running.run_id})")
        return running


@dataclass(frozen=True)
class Difference:
    key: str
    problems: tuple[str, ...]


@dataclass(frozen=True)
class CutoverResult:
    run_id: str
    switched: bool
    reason: str = ""
    """Why it did not switch."""
    frozen: bool = False
    """GCP is frozen (switched, or stopped while frozen: run cutover again, or ``abort``)."""
    verified: int = 0
    """Replicated objects found the same, before or while frozen (each counted once)."""
    verified_while_frozen: int = 0
    different: int = 0
    """Objects that still differed after the patience (what stopped it), before or while frozen."""
    differences: tuple[Difference, ...] = ()
    """At most 20 of them."""
    frozen_seconds: float | None = None
    drain_seconds: float | None = None
    accepted: int = 0
    """Uploads left for Azure during the freeze, accepted at the switch."""
    final_verify: dict[str, Any] | None = None
    """The full verify after the switch (``VerifyResult.to_dict``), unless skipped."""
    by: str = ""
    already: bool = False
    """It had switched before this call: the result is the recorded one."""

    @property
    def final_differences(self) -> int:
        found = self.final_verify or {}
        return int(found.get("missing", 0)) + int(found.get("different", 0))

    @property
    def ok(self) -> bool:
        return self.switched and self.final_differences == 0

    def record(self) -> dict[str, Any]:
        """The JSON of ``cutover.json`` and of ``--json``."""
        found = {"run_id": self.run_id, "by": self.by, "switch": self.switched, "frozen_seconds": self.frozen_seconds,
                 "drain_seconds": self.drain_seconds, "accepted": self.accepted,
                 "verify": {"same": self.verified, "different": self.different,
                            "while_frozen": self.verified_while_frozen,
                            "problems": [asdict(d) for d in self.differences]}}  # fmt: skip
        if self.final_verify is not None:
            found["final_verify"] = self.final_verify
        if self.reason:
            found["error"] = self.reason
        return found

    @classmethod
    def recorded(cls, found: dict[str, Any]) -> CutoverResult:
        verify = found.get("verify", {})
        problems = tuple(Difference(p["key"], tuple(p["problems"])) for p in verify.get("problems", []))
        return cls(run_id=found["run_id"], switched=bool(found.get("switch")), frozen=True,
                   verified=int(verify.get("same", 0)), verified_while_frozen=int(verify.get("while_frozen", 0)),
                   different=int(verify.get("different", 0)), differences=problems,
                   frozen_seconds=found.get("frozen_seconds"), drain_seconds=found.get("drain_seconds"),
                   accepted=int(found.get("accepted", 0)), final_verify=found.get("final_verify"),
                   by=str(found.get("by", "")), already=True)  # fmt: skip


def cutover(
    sides: Sides,
    *,
    run_id: str | None = None,
    timeout: float = 60.0,
    final_verify: bool = True,
    by: str = "",
    progress: Progress = _quiet,
    passes: int = PRE_FREEZE_PASSES,
) -> CutoverResult:
    """Freeze GCP, drain replication, verify what it copied, switch: Azure processes uploads from then on.

    Nothing is frozen while a pass before the freeze finds a difference. While frozen, a drain that does not end
    in ``timeout`` seconds or a difference leaves GCP frozen and Azure a replica: run it again, or ``abort``.
    """
    from migrate.verify import run_verify

    if sides.source is None or sides.dest is None:
        raise ValueError("the cutover verifies: Sides needs its source and dest")
    running = sides.live_run(run_id)
    if runs.exists(sides.records, SWITCHED_KEY):
        if runs.exists(sides.records, REPLICA_KEY):
            raise Refused(f"{sides.dest_at} switched and a rollback is under way: run `rollback` again to finish it")
        with contextlib.suppress(NotFound):  # switched and recorded: a second cutover reports the first
            recorded = sides.records.get(runs.run_key(running.run_id, "cutover.json"))
            progress(f"cut over already: {sides.dest_at} is the primary")
            return CutoverResult.recorded(json.loads(recorded.data))
    run = runs.load_run(sides.records, running.run_id)
    result = CutoverResult(run_id=running.run_id, switched=False, by=by)
    same: set[str] = set()  # the objects found the same: one changed again is compared again, and counted once
    # What replication copied so far is verified before the freeze; while frozen, only what came after.
    since = datetime.fromisoformat(run.created.replace("Z", "+00:00"))
    checkpoint = since
    for attempt in range(max(passes, 1)):  # each takes what was replicated during the one before it
        checkpoint = datetime.now(UTC) - timedelta(seconds=1)
        changed = live.changed_keys(sides.records, running.run_id, since)
        found = live.verify_keys(sides.source, sides.dest, changed, running, patience=timeout)
        result = _verified(result, found, same)
        if found["different"]:
            progress(f"0. before the freeze: {result.verified} replicated objects verified, {result.different} "
                     f"different: not frozen")  # fmt: skip
            return replace(result, reason="replicated objects differ: fix them (or wait for replication) and run "
                                          "cutover again")  # fmt: skip
        since = checkpoint
        if attempt and len(changed) <= FEW_CHANGES:
            break  # what replication copies during one such pass is all the frozen verify has left
    progress(f"0. before the freeze: {result.verified} replicated objects verified, 0 different")
    began = time.monotonic()
    marker = freeze(sides.bucket)
    result = replace(result, frozen=True)
    progress(f"1. frozen at {marker.updated}: the GCP API answers uploads 503; uploads written from now on are Azure's")
    try:
        settled = live.settled_by(sides.source, sides.dest, running)
        drained = live.drain(sides.bucket, sides.records, running.run_id, timeout=timeout, since=checkpoint,
                             settled=settled)  # fmt: skip
    except live.NotSettled as exc:
        progress(f"2. not drained: {exc}")
        return replace(result, reason=f"{exc}. GCP stays frozen: run cutover again, or `abort`")
    result = replace(result, drain_seconds=round(drained.seconds, 3))
    progress(f"2. drained in {drained.seconds:.2f} s: the barrier was replicated and every copy begun before it has "
             f"landed")  # fmt: skip
    found = live.verify_keys(sides.source, sides.dest, drained.keys, running, patience=min(timeout, FROZEN_PATIENCE_S))
    result = replace(_verified(result, found, same), verified_while_frozen=found["same"])
    progress(f"3. verify of what replication copied before the barrier: {found['same']} same, {found['different']} "
             f"different")  # fmt: skip
    if found["different"]:
        return replace(result, reason="replicated objects differ while frozen: GCP stays frozen; fix them and run "
                                      "cutover again, or `abort`")  # fmt: skip
    accepted = live.switch(sides.azure(), sides.bucket, sides.records)
    result = replace(result, switched=True, accepted=accepted, frozen_seconds=round(time.monotonic() - began, 3))
    progress(f"4. switched: Azure processes uploads now ({accepted} left for it during the freeze); frozen "
             f"{result.frozen_seconds:.2f} s. Replication goes on until `finish`.")  # fmt: skip
    if final_verify:
        verified = run_verify(sides.source, sides.dest, source_prefix=sides.source_at.prefix,
                              dest_prefix=sides.dest_at.prefix)  # fmt: skip
        result = replace(result, final_verify=verified.to_dict())
        progress(f"5. full verify after the switch: {verified.same} same, {len(verified.missing)} missing, "
                 f"{len(verified.different)} different")  # fmt: skip
    _report(sides.records, running.run_id, "cutover", result.record())
    with contextlib.suppress(NotFound):  # switched again after a rollback: that one is history
        sides.records.delete(runs.run_key(running.run_id, "rollback.json"))
    return result


def _verified(result: CutoverResult, found: dict[str, Any], same: set[str]) -> CutoverResult:
    same.update(found["same_keys"])
    problems = tuple(Difference(p["key"], tuple(p["problems"])) for p in found["problems"])
    return replace(result, verified=len(same), different=found["different"], differences=problems)


@dataclass(frozen=True)
class AbortResult:
    aborted: bool
    accepted: int
    """Uploads left for Azure during the freeze, accepted on GCP."""
    orphaned_replica_cleared: bool
    """The container was marked a replica by a go-live that failed halfway: the marker is gone."""
    run_id: str | None = None
    by: str = ""

    def record(self) -> dict[str, Any]:
        return asdict(self)


def abort(sides: Sides, *, by: str = "", progress: Progress = _quiet) -> AbortResult:
    """Before the switch: unfreeze GCP and accept there what it left for Azure; Azure stays a replica."""
    if not runs.exists(sides.records, REPLICA_KEY):
        raise Refused(f"{sides.dest_at} is not a replica: it has switched already (roll back instead)")
    if runs.exists(sides.records, SWITCHED_KEY):
        raise Refused(f"{sides.dest_at} switched and a rollback is under way: run `rollback` again to finish it")
    orphaned = live.clear_orphaned_replica(sides.bucket, sides.records)
    accepted = live.abort(sides.gcp())
    running = live.live_run(sides.bucket)
    result = AbortResult(True, accepted, orphaned, running.run_id if running else None, by)
    if running is not None:  # who aborted, in the run it ended
        _report(sides.records, running.run_id, "abort", {**result.record(), "at": _now()})
    if orphaned:
        progress(f"aborted: {sides.dest_at} was marked a replica, but nothing replicates into it (a go-live that "
                 f"failed halfway); the marker is gone and {sides.dest_at} takes uploads again")  # fmt: skip
    else:
        progress(f"aborted: {sides.source_at} takes uploads again ({accepted} left during the freeze are processed "
                 f"on GCP); {sides.dest_at} stays a replica and replication goes on")  # fmt: skip
    return result


@dataclass(frozen=True)
class RollbackResult:
    run_id: str
    rolled_back: bool
    azure_jobs_waited: int = 0
    copied_back: int = 0
    skipped: int = 0
    bytes: int = 0
    failed: tuple[dict[str, str], ...] = ()
    """Copies that failed their proof (at most 20): nothing was switched back."""
    accepted: int = 0
    frozen_seconds: float | None = None
    by: str = ""
    already: bool = False
    details: dict[str, Any] = field(default_factory=dict)
    """The record as written (``since_switch``, the seconds of each step)."""

    def record(self) -> dict[str, Any]:
        return {**self.details, "run_id": self.run_id, "rolled_back": self.rolled_back, "by": self.by,
                "azure_jobs_waited": self.azure_jobs_waited, "copied_back": self.copied_back,
                "skipped": self.skipped, "bytes": self.bytes, "failed": list(self.failed), "accepted": self.accepted,
                "frozen_seconds": self.frozen_seconds}  # fmt: skip

    @classmethod
    def of(cls, found: dict[str, Any], *, already: bool = False) -> RollbackResult:
        return cls(run_id=found["run_id"], rolled_back=bool(found["rolled_back"]),
                   azure_jobs_waited=int(found.get("azure_jobs_waited", 0)),
                   copied_back=int(found.get("copied_back", 0)), skipped=int(found.get("skipped", 0)),
                   bytes=int(found.get("bytes", 0)), failed=tuple(found.get("failed", [])),
                   accepted=int(found.get("accepted", 0)), frozen_seconds=found.get("frozen_seconds"),
                   by=str(found.get("by", "")), already=already, details=found)  # fmt: skip


def rollback(sides: Sides, *, timeout: float = 120.0, by: str = "", progress: Progress = _quiet) -> RollbackResult:
    """After the switch: hold Azure, let its jobs end, copy back what it made, make GCP the primary.

    ``TransientError`` (``live.NotSettled`` included) when Azure's jobs did not end or a cloud failed a request: both
    clouds stay held, and running it again goes on. A copy that fails its proof returns ``rolled_back`` False.
    """
    from migrate import rollback as back

    running = sides.live_run()
    if back.switched(sides.records) is None:
        done = back.last(sides.records, running.run_id)
        if done is None:
            raise Refused(f"{sides.dest_at} has not switched: nothing to roll back (`abort` ends a cutover before it)")
        progress(f"rolled back already: {sides.source_at} is the primary and {sides.dest_at} a replica")
        return RollbackResult.of(done, already=True)
    progress(f"1. {sides.dest_at} is held: its API answers uploads 503; uploads written to it from now on are GCP's")
    result = RollbackResult.of(back.rollback(sides.gcp(), sides.azure(), running, timeout=timeout, by=by))
    progress(f"2. {result.azure_jobs_waited} job(s) Azure was running have ended")
    progress(f"3. copied back to {sides.source_at}: {result.copied_back} copied ({result.bytes:,} bytes), "
             f"{result.skipped} there already, {len(result.failed)} failed")  # fmt: skip
    for item in result.failed:
        progress(f"failed: {item['key']}: {item['reason']}")
    if result.rolled_back:
        progress(f"4. switched back: {sides.source_at} takes uploads again ({result.accepted} left during the hold "
                 f"are processed on GCP); {sides.dest_at} is a replica, replication goes on")  # fmt: skip
    else:
        progress("4. not switched back: GCP stays frozen and Azure held; run rollback again")
    return result


@dataclass(frozen=True)
class FinishResult:
    run_id: str
    after: str
    """``cutover`` (Azure is the primary) or ``abort`` (GCP is, and the container stays a replica)."""
    removed: int = 0
    """Bookkeeping blobs removed from the run record."""
    feed_removed: bool = False
    """The replication feed ``plan --live`` made is gone (a bucket notification on GCP)."""
    by: str = ""
    at: str = ""
    already: bool = False

    def record(self) -> dict[str, Any]:
        return {"run_id": self.run_id, "after": self.after, "removed": self.removed,
                "feed_removed": self.feed_removed, "by": self.by, "at": self.at}  # fmt: skip


def finish(sides: Sides, *, by: str = "", progress: Progress = _quiet) -> FinishResult:
    """End replication after a cutover or an abort, and with it the way back (``rollback`` refuses after it).

    Removes ``_cutover/live.json`` (replication stops), records the run in ``_cutover/finished.json``, then removes
    the run's bookkeeping (``BOOKKEEPING``); the run's record and its reports stay. A replication that read the live
    marker just before it went may leave a blob of bookkeeping: a second ``finish`` removes it.
    """
    running = live.live_run(sides.bucket)
    if running is None or running.container != sides.dest_at.container:
        ended = _finished(sides.bucket)
        if ended is None or ended.get("container") != sides.dest_at.container:
            raise Refused(f"no live run replicates {sides.source_at} to {sides.dest_at}: nothing to finish")
        result = FinishResult(str(ended["run_id"]), str(ended.get("after")), by=str(ended.get("by", "")),
                              at=str(ended.get("at", "")), already=True)  # fmt: skip
        result = replace(result, removed=_remove_bookkeeping(sides.records, result.run_id))
        if not runs.exists(sides.records, runs.run_key(result.run_id, "finish.json")):  # the first run stopped
            _report(sides.records, result.run_id, "finish", result.record())
        progress(f"finished already: run {result.run_id} ended at {result.at}")
        return result
    switched, replica = runs.exists(sides.records, SWITCHED_KEY), runs.exists(sides.records, REPLICA_KEY)
    frozen = runs.exists(sides.bucket, FREEZE_KEY)
    if switched and replica:
        raise Refused(f"{sides.dest_at} switched and a rollback is under way: run `rollback` again to finish it")
    if not switched and frozen:
        raise Refused(f"{sides.source_at} is frozen for a cutover that has not switched: run `cutover` again or "
                      f"`abort` first")  # fmt: skip
    if not switched and not runs.exists(sides.records, runs.run_key(running.run_id, "abort.json")):
        raise Refused(f"run {running.run_id} neither cut over nor was aborted: `cutover` or `abort` first")
    result = FinishResult(running.run_id, "cutover" if switched else "abort", by=by, at=_now())
    marker = {**result.record(), "container": sides.dest_at.container}
    sides.bucket.put(FINISHED_KEY, json.dumps(marker).encode(), content_type="application/json")
    with contextlib.suppress(NotFound):
        sides.bucket.delete(live.LIVE_KEY)
    closed = running.feed == "made" and sides.feed is not None and sides.feed.close()
    result = replace(result, feed_removed=bool(closed))
    progress(f"1. replication of {sides.source_at} into {sides.dest_at} has ended"
             + ("; its bucket notification is removed" if closed else ""))  # fmt: skip
    result = replace(result, removed=_remove_bookkeeping(sides.records, running.run_id))
    _report(sides.records, running.run_id, "finish", result.record())
    primary = sides.dest_at if switched else sides.source_at
    progress(f"2. {result.removed} bookkeeping blobs removed; run {running.run_id} is finished, {primary} is the "
             f"primary, and there is no way back")  # fmt: skip
    return result


def _remove_bookkeeping(records: ObjectStore, run_id: str) -> int:
    removed = 0
    for prefix in BOOKKEEPING:
        for info in list(records.list(runs.run_key(run_id, prefix))):
            with contextlib.suppress(NotFound):
                records.delete(info.key)
                removed += 1
    return removed


def _finished(bucket: ObjectStore) -> dict[str, Any] | None:
    try:
        return dict(json.loads(bucket.get(FINISHED_KEY).data))
    except NotFound:
        return None


def _report(records: ObjectStore, run_id: str, step: str, record: dict[str, Any]) -> None:
    records.put(runs.run_key(run_id, f"{step}.json"), json.dumps(record).encode(), content_type="application/json")


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def freeze(store: ObjectStore, reason: str = "moving to Azure") -> ObjectInfo:
    """Stop new uploads on this store; the marker's info (its ``updated`` is the freeze time).

    Written once: freezing again keeps the first marker, so the time that decides which cloud
    processes an upload (``core.pipeline.accept_upload``) never moves.
    """
    record = {"reason": reason, "since": _now()}
    with contextlib.suppress(Conflict):  # frozen already
        store.put(FREEZE_KEY, json.dumps(record).encode(), content_type="application/json", if_none_match=True)
    return store.head(FREEZE_KEY)
