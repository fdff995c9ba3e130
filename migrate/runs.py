"""The run record: what a migration planned, copied and decided, under ``_migrations/<run_id>/`` in the container.

- ``run.json``: the plan (``Run``); ``_migrations/index/<run_id>``: one line per run for the listing.
- ``batches/<n>.json``: each batch's outcome, written by the worker that copied it (``migrate.fanout``).
- ``replication/``: live sync's bookkeeping (``migrate.live``): ``changes/<minute>/<ten seconds>/<id>~<lag ms>``,
  ``inflight/``, ``barriers/``, and its reports ``deletes/`` and ``failed/``.
- ``cutover.json``, ``abort.json``, ``rollback.json``, ``finish.json``: each step's report (``migrate.cutover``).

``status`` adds it all up; the fan-out, live sync and the use cases read and write it through this module.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import statistics
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from core.errors import NotFound
from core.ports import ObjectStore
from migrate.copy import DEFAULT_BLOCK_SIZE

RUNS_PREFIX = "_migrations/"
DEFAULT_PART_BYTES = 512 * 1024 * 1024
"""An object above this is copied in parts of about this size, one batch each (a few seconds each)."""
REPORTS = ("cutover", "abort", "rollback", "finish")
"""The steps' reports, ``<step>.json`` in the run record (a cutover after a rollback removes ``rollback.json``)."""
CHANGES = "replication/changes/"
"""Per copy, before it: ``<minute>/<ten seconds>/<message id>~<lag ms>`` (``change_folder``), its body the key and
the generation on two lines, and the same as metadata (``key``, ``generation``)."""
INFLIGHT = "replication/inflight/"
"""``<message id>``: a copy that failed and waits for a retry, or a delete under way."""
FAILED = "replication/failed/"
"""``<message id>.json``: a replication the dead letter ended."""
LAG_WINDOW = timedelta(minutes=2)
"""``replication`` in the run record reports the lags of the objects replicated in the last two minutes."""


@dataclass(frozen=True)
class Run:
    run_id: str
    source: str
    dest: str
    source_prefix: str
    dest_prefix: str
    created: str
    batches: int
    objects: int
    bytes: int
    held_batches: list[int]
    """uploads/ batches, released once every other batch is done."""
    planned: bool = True
    """False while the planner is still listing: totals are not final yet."""
    max_rate: float | None = None
    """Objects a second each batch may copy (``--max-rate`` / ``"max_rate"``); None: no cap."""
    bwlimit: float | None = None
    """Bytes a second each batch may copy (``--bwlimit`` / ``"bwlimit"``); None: no cap."""
    max_batches: int | None = None
    """Batches of this run in flight at once (``--max-batches`` / ``"max_batches"``); None: no cap."""
    block_size: int = DEFAULT_BLOCK_SIZE
    part_bytes: int = DEFAULT_PART_BYTES
    live: bool = False
    """Replication runs beside the bulk copy until the cutover (``plan --live``, ``migrate.live``)."""
    started_by: str = ""
    """Who planned it (``migrate.actor``)."""


def new_run_id() -> str:
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ") + "-" + secrets.token_hex(3)


def run_key(run_id: str, name: str) -> str:
    if not run_id or "/" in run_id or run_id in (".", ".."):
        raise NotFound(f"no migration run {run_id!r}")
    return f"{RUNS_PREFIX}{run_id}/{name}"


def save(records: ObjectStore, run: Run) -> None:
    records.put(run_key(run.run_id, "run.json"), json.dumps(asdict(run)).encode(), content_type="application/json")


def load_run(records: ObjectStore, run_id: str) -> Run:
    try:
        return Run(**json.loads(records.get(run_key(run_id, "run.json")).data))
    except NotFound:
        raise NotFound(f"no migration run {run_id!r}") from None


def status(records: ObjectStore, run_id: str) -> dict[str, Any]:
    """The run record with its batches added up."""
    run = load_run(records, run_id)
    totals = {"copied": 0, "skipped": 0, "failed": 0, "bytes": 0}
    done = failed = 0
    committed: set[str] = set()
    errors: list[dict[str, str]] = []
    for info in records.list(run_key(run_id, "batches/")):
        state = json.loads(records.get(info.key).data)
        errors += state.get("errors", [])[: max(0, 20 - len(errors))]
        done += state["state"] == "done"
        failed += state["state"] == "failed"
        for name in totals:
            totals[name] += int(state.get(name, 0))
        if state.get("committed"):
            committed.add(state["part_of"])  # two parts may both commit (harmless): the object counts once
    totals["copied"] += len(committed)
    pending = run.batches - done - failed
    overall = "running" if pending or not run.planned else ("failed" if failed else "done")
    found = {"run_id": run.run_id, "state": overall, "source": run.source, "dest": run.dest, "created": run.created,
             "batches": run.batches, "batches_done": done, "batches_failed": failed, "batches_pending": pending,
             "objects": run.objects, "planned_bytes": run.bytes, **totals, "errors": errors,
             "started_by": run.started_by}  # fmt: skip
    found["steps"] = {info.key.rsplit("/", 1)[-1].removesuffix(".json"): json.loads(records.get(info.key).data)
                      for info in records.list(run_key(run_id, "steps/"))}  # fmt: skip
    if run.live:
        found["replication"] = replication(records, run_id)
        for step in REPORTS:  # a cutover after a rollback removes rollback.json
            with contextlib.suppress(NotFound):
                found[step] = json.loads(records.get(run_key(run_id, f"{step}.json")).data)
    return found


def runs(records: ObjectStore) -> list[dict[str, Any]]:
    """The runs recorded in this container, newest first."""
    found = [json.loads(records.get(info.key).data) for info in records.list(f"{RUNS_PREFIX}index/")]
    return sorted(found, key=lambda run: str(run.get("run_id")), reverse=True)


def replication(records: ObjectStore, run_id: str, *, now: datetime | None = None) -> dict[str, Any]:
    """``{"lag_p50_s", "lag_p95_s", "pending", "failed"}`` over the objects replicated in the last two minutes: the
    lag from the write in GCS to the start of its copy; pending, the copies that failed and wait for a retry (and
    the deletes under way)."""
    now = now or datetime.now(UTC)
    by_message: dict[str, float] = {}  # a duplicate delivery writes a second record: count the first
    minutes = {change_folder(now - timedelta(minutes=m), minute=True) for m in range(int(LAG_WINDOW.seconds / 60) + 1)}
    for minute in sorted(minutes):
        for info in records.list(run_key(run_id, CHANGES + minute)):
            message, lag = change_name(info.key)
            with contextlib.suppress(ValueError):
                by_message.setdefault(message, int(lag) / 1000)
    lags = list(by_message.values())
    pending = sum(1 for _ in records.list(run_key(run_id, INFLIGHT)))
    failed = sum(1 for _ in records.list(run_key(run_id, FAILED)))
    p50 = statistics.median(lags) if lags else None
    p95 = statistics.quantiles(lags, n=20)[-1] if len(lags) >= 2 else (lags[0] if lags else None)
    return {"lag_p50_s": p50, "lag_p95_s": p95, "pending": pending, "failed": failed, "recent": len(lags)}


def change_folder(when: datetime, *, minute: bool = False) -> str:
    """Where the change records written at ``when`` go, under ``CHANGES``: its minute, then its ten seconds
    (``20261206T1749/30/`` from 17:49:30 to 17:49:39); with ``minute``, the minute's folder (``20261206T1749/``).
    The cutover lists the few seconds before its freeze, the status whole minutes."""
    when = when.astimezone(UTC)
    folder = f"{when.strftime('%Y%m%dT%H%M')}/"
    return folder if minute else f"{folder}{when.second // 10 * 10:02d}/"


def change_name(key: str) -> tuple[str, str]:
    """(message id, lag ms) from a change record's name (``CHANGES``)."""
    message, _, lag = key.rsplit("/", 1)[-1].rpartition("~")
    return message, lag


def exists(records: ObjectStore, key: str) -> bool:
    try:
        records.head(key)
    except NotFound:
        return False
    return True
