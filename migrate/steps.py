"""The live migration's steps run as queued tasks: what ``POST {base}/migrations/{run_id}/{step}`` starts.

The request writes ``_migrations/<run>/steps/<step>.json`` (``queued``) and sends one message, ``{"step", "run_id",
"container"}``, on the fan-out's queue, so no request outlives its timeout. The task (``handle``) takes a lease on
that record by a conditional write (``running``, until ``lease_until``), runs the use case of ``migrate.cutover``
and writes its result into the same record (``done``, ``refused`` or ``failed``). So:

- a repeated delivery finds the step ended and does nothing: the recorded result stands;
- a delivery while another worker holds the lease raises ``Busy``: the platform delivers again later, and takes the
  step over once the lease has run out (a worker killed mid-step);
- a transient failure puts the step back to ``queued`` and raises: the platform retries it (each step is safe to
  run again);
- each step is bounded to fit an event function's limit (540 s on GCP): its waits get at most ``MAX_WAIT_S``.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from core.errors import BadRequest, Busy, Conflict, CoreError, NotFound, Refused, TransientError
from core.logs import redact
from core.ports import ObjectStore
from migrate import cutover, runs

log = logging.getLogger("migrate.steps")

STEPS = ("cutover", "abort", "rollback", "finish")
LEASE_SECONDS = 540
"""As long as an event function may run on GCP: a lease older than this belongs to a worker that is gone."""
MAX_WAIT_S = 120.0
"""The longest a step's wait may last in a task. The cutover waits at most twice (a difference before the freeze gets
this much patience and stops it; the drain gets this much), plus a verify of at most 10 s while frozen: it ends
inside ``LEASE_SECONDS``. Its full verify after the switch is off in a task (``"final_verify": true`` turns it on; a
large bucket outlasts the function: run ``python -m migrate verify`` instead)."""
ENDED = ("done", "refused", "failed")


def record_key(run_id: str, step: str) -> str:
    return runs.run_key(run_id, f"steps/{step}.json")


def request(records: ObjectStore, run_id: str, step: str, *, by: str, options: Mapping[str, Any]) -> bool:
    """Record the step as queued; True when a task must be sent (False: one is queued or running already)."""
    if step not in STEPS:
        raise NotFound(f"no step {step!r}: one of {', '.join(STEPS)}")
    runs.load_run(records, run_id)  # NotFound for an unknown run
    record = {"step": step, "state": "queued", "by": by, "requested": _now().isoformat(), "options": dict(options)}
    try:
        found = records.get(record_key(run_id, step))
    except NotFound:
        try:
            records.put(record_key(run_id, step), _json(record), content_type="application/json", if_none_match=True)
        except Conflict:
            return False  # another request queued it a moment ago
        return True
    current = json.loads(found.data)
    if current.get("state") not in ENDED and not _lease_over(current):
        return False
    try:  # ended before, or its worker is gone: run it again
        records.put(record_key(run_id, step), _json(record), content_type="application/json",
                    if_match=found.info.version)  # fmt: skip
    except Conflict:
        return False
    return True


def handle(
    message: Mapping[str, Any], records: ObjectStore, sides_for: Callable[[runs.Run], cutover.Sides]
) -> dict[str, Any]:
    """Run one queued step on the run record ``records``; its record as written. ``sides_for(run)`` opens what the
    step acts on. ``BadRequest`` or ``NotFound`` for a message that can never work (dropped by the caller)."""
    step, run_id = str(message.get("step") or ""), str(message.get("run_id") or "")
    if step not in STEPS or not run_id:
        raise BadRequest(f"not a step message: {dict(message)!r:.200}")
    key = record_key(run_id, step)
    found = records.get(key)  # NotFound: no request for it
    current = json.loads(found.data)
    if current.get("state") in ENDED:
        return dict(current)  # a repeated delivery: the recorded result stands
    if current.get("state") == "running" and not _lease_over(current):
        raise Busy(f"the {step} of run {run_id} runs elsewhere until {current.get('lease_until')}")
    started = _now()
    running = {**current, "state": "running", "started": started.isoformat(),
               "lease_until": (started + timedelta(seconds=LEASE_SECONDS)).isoformat()}  # fmt: skip
    try:
        leased = records.put(key, _json(running), content_type="application/json", if_match=found.info.version)
    except Conflict:
        raise Busy(f"the {step} of run {run_id} was taken by another worker") from None
    options = dict(current.get("options") or {})
    try:
        result = _run(step, sides_for(runs.load_run(records, run_id)), str(current.get("by", "")), options)
        ended = {**running, "state": "done", "ok": _ok(result), "result": result.record()}
    except Refused as exc:
        ended = {**running, "state": "refused", "error": str(exc)}
    except TransientError as exc:
        queued = {**current, "state": "queued", "error": redact(str(exc))}  # the platform delivers it again
        records.put(key, _json(queued), content_type="application/json", if_match=leased.version)
        raise
    except CoreError as exc:
        ended = {**running, "state": "failed", "error": redact(str(exc))}
    ended["ended"] = _now().isoformat()
    records.put(key, _json(ended), content_type="application/json", if_match=leased.version)
    log.info("%s of run %s: %s", step, run_id, ended["state"])
    return ended


def give_up(message: Mapping[str, Any], records: ObjectStore, reason: str) -> None:
    """The dead letter: a step the platform gave up on ends ``failed`` with the reason, unless it ended already."""
    step, run_id = str(message.get("step") or ""), str(message.get("run_id") or "")
    if step not in STEPS or not run_id:
        return
    try:
        found = records.get(record_key(run_id, step))
    except NotFound:
        return
    current = json.loads(found.data)
    if current.get("state") in ENDED:
        return
    ended = {**current, "state": "failed", "error": redact(reason), "ended": _now().isoformat()}
    with contextlib.suppress(Conflict):  # it ended meanwhile
        records.put(record_key(run_id, step), _json(ended), content_type="application/json",
                    if_match=found.info.version)  # fmt: skip


def _run(step: str, sides: cutover.Sides, by: str, options: Mapping[str, Any]) -> Any:
    wait = min(float(options.get("timeout") or MAX_WAIT_S), MAX_WAIT_S)
    if step == "cutover":
        return cutover.cutover(sides, timeout=wait, final_verify=bool(options.get("final_verify")), by=by,
                               progress=log.info)  # fmt: skip
    if step == "rollback":
        return cutover.rollback(sides, timeout=wait, by=by, progress=log.info)
    if step == "abort":
        return cutover.abort(sides, by=by, progress=log.info)
    return cutover.finish(sides, by=by, progress=log.info)


def _ok(result: Any) -> bool:
    """Whether the step ended as asked: switched (and a clean final verify), aborted, rolled back, finished."""
    return bool(getattr(result, "ok", None) or getattr(result, "aborted", None)
                or getattr(result, "rolled_back", None) or isinstance(result, cutover.FinishResult))  # fmt: skip


def _lease_over(record: Mapping[str, Any], now: datetime | None = None) -> bool:
    until = record.get("lease_until")
    return record.get("state") == "running" and bool(until) and datetime.fromisoformat(str(until)) < (now or _now())


def _now() -> datetime:
    return datetime.now(UTC)


def _json(record: Mapping[str, Any]) -> bytes:
    return json.dumps(record).encode()
