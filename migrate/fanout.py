"""The queue-fanned migration: a plan of batches, one worker call per batch, and the run record.

``plan`` lists the source once, at constant memory, and cuts it into batches
by object count and by bytes. Each batch becomes one message on the
``migrate-batches`` queue; a batch whose message would pass the 64 KiB Azure
queue limit is written as a manifest blob and the message names it.

The run record lives in the destination under ``_migrations/<run_id>/``:
``run.json`` (what was planned) and ``batches/<n>.json`` (each batch's state,
written by the worker that copied it). ``status`` adds them up.

Order for the pipeline's own buckets: batches of ``jobs/`` and ``results/`` are
planned first, ``uploads/`` last, and ``uploads/`` batches are held back in
manifests until every earlier batch is done; the worker that finishes the last
earlier batch releases them (exactly once, by a conditional create). So when
Azure's trigger sees a migrated upload, its DONE record is already there.

An object too big for one function invocation (over ``part_bytes``, 512 MiB by
default) is planned as several batches, each a ``part``: a range of its blocks.
Each part stages its blocks; the part that finds every block staged proves the
whole (the CRC32Cs that the block ids carry, combined, against the source's)
and commits it.

``max_batches`` caps the batches of a run in flight at once: the planner sends
that many, and each finished batch (done, failed or dead-lettered) releases the
one ``max_batches`` after it, so a run moves in that many lanes. Nothing waits
on a busy signal, so no delivery attempt is spent waiting.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from core import names
from core.errors import BadRequest, Conflict, NotFound
from core.logs import redact
from core.ports import Destination, ObjectDetails, ObjectStore, Source, TaskQueue
from migrate.copy import DEFAULT_BLOCK_SIZE, Options, block_ranges, copy_entry, fresh_details, phases
from migrate.runs import DEFAULT_PART_BYTES, RUNS_PREFIX, Run, exists, load_run, new_run_id, run_key, save
from migrate.throttle import Throttle

BATCH_QUEUE = names.BATCHES
MAX_MESSAGE_JSON = 48 * 1024  # 64 KiB once base64-encoded
DEFAULT_BATCH_OBJECTS = 200
DEFAULT_BATCH_BYTES = 256 * 1024 * 1024


def _batches(objects: Iterable[ObjectDetails], run: Run, max_objects: int, max_bytes: int) -> Iterator[dict[str, Any]]:
    """Batch bodies: ``{"objects": [entry, ...]}``, or ``{"part": entry}`` with ``first``/``last`` blocks."""
    batch: list[dict[str, Any]] = []
    size = 0
    for obj in objects:
        entry = {"key": obj.key, "size": obj.size, "generation": obj.generation}
        if obj.size > run.part_bytes and obj.crc32c:  # a part proves nothing alone: the commit combines CRC32Cs
            for first, last in block_ranges(obj.size, run.block_size, run.part_bytes):
                yield {"part": {**entry, "first": first, "last": last}}
            continue
        if batch and (len(batch) >= max_objects or size + obj.size > max_bytes):
            yield {"objects": batch}
            batch, size = [], 0
        batch.append(entry)
        size += obj.size
    if batch:
        yield {"objects": batch}


def plan(
    source: Source,
    records: ObjectStore,
    queue: TaskQueue,
    *,
    source_uri: str,
    dest_uri: str,
    source_prefix: str = "",
    dest_prefix: str = "",
    max_objects: int = DEFAULT_BATCH_OBJECTS,
    max_bytes: int = DEFAULT_BATCH_BYTES,
    run_id: str | None = None,
    max_rate: float | None = None,
    bwlimit: float | None = None,
    max_batches: int | None = None,
    block_size: int = DEFAULT_BLOCK_SIZE,
    part_bytes: int = DEFAULT_PART_BYTES,
    live: bool = False,
    started_by: str = "",
) -> Run:
    """List the source and enqueue its batches; return the run record."""
    run_id = run_id or new_run_id()
    container = dest_uri.split("://", 1)[-1].split("/", 1)[0]
    created = datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    Throttle(max_rate=max_rate, bwlimit=bwlimit)  # BadRequest for a cap at or below 0, before anything is written
    if max_batches is not None and max_batches < 1:
        raise BadRequest(f"max_batches must be at least 1, not {max_batches}")
    if block_size < 1 or part_bytes < 1:
        raise BadRequest("the block size and the part size must be positive")
    run = Run(run_id, source_uri, dest_uri, source_prefix, dest_prefix, created, 0, 0, 0, [], planned=False,
              max_rate=max_rate, bwlimit=bwlimit, max_batches=max_batches, block_size=block_size,
              part_bytes=part_bytes, live=live, started_by=started_by)  # fmt: skip
    save(records, run)  # workers may start before the listing ends: they find the run already
    entry = {"run_id": run_id, "source": source_uri, "dest": dest_uri, "created": created, "live": live}
    records.put(f"{RUNS_PREFIX}index/{run_id}", json.dumps(entry).encode(), content_type="application/json")
    number = objects = total = sent = 0
    held: list[int] = []
    for is_held, listing in phases(source, source_prefix):
        for body in _batches(listing, run, max_objects, max_bytes):
            number += 1
            entries = body.get("objects") or [body["part"]]
            if "part" not in body or body["part"]["first"] == 0:
                objects += len(entries)
                total += sum(e["size"] for e in entries)
            message: dict[str, Any] = {"run_id": run_id, "container": container, "batch": number, **body}
            waits = max_batches is not None and sent >= max_batches  # released by its lane's batch
            if is_held or waits or len(json.dumps(message)) > MAX_MESSAGE_JSON:
                manifest = run_key(run_id, f"manifests/{number}.json")
                records.put(manifest, json.dumps({**body, "held": is_held}).encode(), content_type="application/json")
                message = {"run_id": run_id, "container": container, "batch": number, "manifest": manifest}
            if is_held:
                held.append(number)
            elif not waits:
                sent += 1
                queue.send(message)  # at once: memory stays constant, whatever the bucket size
            elif exists(records, run_key(run_id, f"batches/{number - (max_batches or 0)}.json")):
                _release(records, queue, run, number)  # its lane's batch finished while this one was listed
    run = replace(run, batches=number, objects=objects, bytes=total, held_batches=held, planned=True)
    save(records, run)
    _release_when_ready(records, queue, run)  # in case every earlier batch finished while listing
    return run


def process_batch(payload: Mapping[str, Any], source: Source, dest: Destination, records: ObjectStore,
                  queue: TaskQueue, head: Any, options: Options | None = None) -> dict[str, Any]:  # fmt: skip
    """Copy one batch (safe to repeat) and record its outcome; ``head(key)`` gives the existing blob or None."""
    run_id, number = payload.get("run_id"), payload.get("batch")
    if not isinstance(run_id, str) or not isinstance(number, int):
        raise BadRequest(f"not a migration batch message: {dict(payload)!r:.200}")
    run = load_run(records, run_id)
    body = _body(records, payload)
    options = replace(options or Options(), block_size=run.block_size)
    if run.max_rate or run.bwlimit:  # each batch keeps to the run's caps
        options = replace(options, throttle=Throttle(max_rate=run.max_rate, bwlimit=run.bwlimit))
    counts = {"copied": 0, "skipped": 0, "failed": 0, "bytes": 0, "staged": 0}
    errors: list[dict[str, str]] = []
    part = body.get("part")
    state: dict[str, Any] = {"batch": number}
    gone = 0
    for entry in [part] if part else body.get("objects", []):
        obj = fresh_details(source, entry["key"])
        if obj is None:
            counts["skipped"] += 1  # deleted since the plan: nothing to copy
            gone += 1
            continue
        if part and obj.generation != part["generation"]:
            counts["failed"] += 1
            errors.append({"key": obj.key, "error": f"rewritten since the plan (generation {part['generation']}, "
                           f"now {obj.generation}): copy it again with `migrate copy`"})  # fmt: skip
            continue
        blocks = (part["first"], part["last"]) if part else None
        outcome = copy_entry(source, dest, obj, head, options, source_prefix=run.source_prefix,
                             dest_prefix=run.dest_prefix, blocks=blocks)  # fmt: skip
        if outcome.action == "failed" and run.live and not part:
            now = fresh_details(source, entry["key"])
            if now is None or now.generation != obj.generation:
                outcome.action, outcome.error = "skipped", None  # rewritten meanwhile: replication copies it
        counts[outcome.action if outcome.action in counts else "failed"] += 1
        if outcome.action in ("copied", "staged"):
            counts["bytes"] += outcome.bytes
        if outcome.error:
            errors.append({"key": entry["key"], "error": outcome.error})
    if part:  # the object counts once, by its key, when a part committed it (or found it committed)
        committed = counts["copied"] + counts["skipped"] - gone > 0 and not counts["failed"]
        counts.update(copied=0, skipped=gone if part["first"] == 0 else 0)
        state.update(part_of=part["key"], committed=committed)
    counts.pop("staged", None)
    state.update(state="failed" if counts["failed"] else "done", **counts, errors=errors[:50])
    records.put(run_key(run_id, f"batches/{number}.json"), json.dumps(state).encode(), content_type="application/json")
    _finished(records, queue, run, number, held=bool(body.get("held")))
    return state


def mark_failed(records: ObjectStore, payload: Mapping[str, Any], reason: str, queue: TaskQueue | None = None) -> None:
    """The poison path: the batch is recorded failed with a reason, unless a delivery already finished it
    (a late or duplicate dead letter does not undo a copy that was done and recorded). With ``queue``,
    the batch's lane goes on (``max_batches``)."""
    run_id, number = payload.get("run_id"), payload.get("batch")
    if not isinstance(run_id, str) or not isinstance(number, int):
        return
    with contextlib.suppress(NotFound):
        if json.loads(records.get(run_key(run_id, f"batches/{number}.json")).data).get("state") == "done":
            return
    state = {"batch": number, "state": "failed", "copied": 0, "skipped": 0, "failed": 0, "bytes": 0,
             "errors": [{"key": "*", "error": redact(reason)}]}  # fmt: skip
    records.put(run_key(run_id, f"batches/{number}.json"), json.dumps(state).encode(), content_type="application/json")
    if queue is not None:
        with contextlib.suppress(NotFound, BadRequest):
            _finished(records, queue, load_run(records, run_id), number, held=bool(_body(records, payload).get("held")))


def _body(records: ObjectStore, payload: Mapping[str, Any]) -> Mapping[str, Any]:
    """The batch itself: the message, or the manifest it names (a list of entries in older runs)."""
    if "objects" in payload or "part" in payload:
        return payload
    manifest = payload.get("manifest")
    if not isinstance(manifest, str) or not manifest.startswith(RUNS_PREFIX):
        raise BadRequest(f"the batch message names no objects and no manifest: {dict(payload)!r:.200}")
    found = json.loads(records.get(manifest).data)
    return {"objects": found} if isinstance(found, list) else found


def _finished(records: ObjectStore, queue: TaskQueue, run: Run, number: int, *, held: bool) -> None:
    """What a finished batch sets going: the next batch in its lane, and the held uploads/ batches."""
    if run.max_batches:
        after = number + run.max_batches
        try:
            waiting = json.loads(records.get(run_key(run.run_id, f"manifests/{after}.json")).data)
        except NotFound:
            waiting = None  # not listed yet: the planner releases it when it is
        if isinstance(waiting, dict) and bool(waiting.get("held")) == held:
            _release(records, queue, run, after)
    if not held:
        _release_when_ready(records, queue, load_run(records, run.run_id))


def _release_when_ready(records: ObjectStore, queue: TaskQueue, run: Run) -> None:
    if not run.planned or not run.held_batches:
        return  # the planner checks again when the listing is done
    finished = {int(i.key.rsplit("/", 1)[1].split(".")[0]) for i in records.list(run_key(run.run_id, "batches/"))}
    earlier = set(range(1, run.batches + 1)) - set(run.held_batches)
    if earlier <= finished:
        _release_held(records, queue, run)


def _release_held(records: ObjectStore, queue: TaskQueue, run: Run) -> None:
    try:
        records.put(run_key(run.run_id, "released"), b"", if_none_match=True)  # exactly one releaser
    except Conflict:
        return
    for number in run.held_batches[: run.max_batches or None]:  # with a cap, the rest follow in lanes
        _release(records, queue, run, number)


def _release(records: ObjectStore, queue: TaskQueue, run: Run, number: int) -> None:
    """Send the waiting batch ``number``, exactly once however many finishers race to."""
    if run.max_batches:
        try:
            records.put(run_key(run.run_id, f"released/{number}"), b"", if_none_match=True)
        except Conflict:
            return
    container = run.dest.split("://", 1)[-1].split("/", 1)[0]
    manifest = run_key(run.run_id, f"manifests/{number}.json")
    queue.send({"run_id": run.run_id, "container": container, "batch": number, "manifest": manifest})
