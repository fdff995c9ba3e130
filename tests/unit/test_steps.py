"""The live migration's steps as queued tasks (``migrate.steps``) on the in-memory ports: a lease taken by a
conditional write, a repeated delivery that returns the recorded result, a worker gone mid-step, the dead letter."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from core.errors import BadRequest, Busy, NotFound, TransientError
from core.pipeline import FREEZE_KEY, SWITCHED_KEY
from migrate import runs, steps
from tests.unit.test_cutover import World


def queued(world: World, step: str, **options: Any) -> dict[str, Any]:
    assert steps.request(world.records, world.run.run_id, step, by="ops", options=options)
    return {"step": step, "run_id": world.run.run_id, "container": "c"}


def run(world: World, message: dict[str, Any]) -> dict[str, Any]:
    with world.replicating():
        return steps.handle(message, world.records, lambda found: world.sides)


def stored(world: World, step: str) -> dict[str, Any]:
    return dict(json.loads(world.records.get(steps.record_key(world.run.run_id, step)).data))


def test_a_step_runs_once_and_a_repeated_delivery_returns_its_result() -> None:
    world = World()
    message = queued(world, "cutover", timeout=5)
    assert not steps.request(world.records, world.run.run_id, "cutover", by="ops", options={})  # queued already
    done = run(world, message)
    assert done["state"] == "done" and done["ok"] and done["result"]["switch"] and done["by"] == "ops"
    assert runs.exists(world.records, SWITCHED_KEY) and "final_verify" not in done["result"]  # off in a task
    again = run(world, message)
    assert again == done == stored(world, "cutover")  # nothing ran again
    assert runs.status(world.records, world.run.run_id)["steps"]["cutover"]["state"] == "done"
    assert steps.request(world.records, world.run.run_id, "cutover", by="ops", options={})  # ended: may run again


def test_a_step_held_by_another_worker_is_busy_until_its_lease_runs_out() -> None:
    world = World()
    message = queued(world, "abort")
    record = stored(world, "abort")
    soon = datetime.now(UTC) + timedelta(seconds=60)
    world.records.put(steps.record_key(world.run.run_id, "abort"),
                      json.dumps({**record, "state": "running", "lease_until": soon.isoformat()}).encode())  # fmt: skip
    with pytest.raises(Busy):
        run(world, message)
    assert not steps.request(world.records, world.run.run_id, "abort", by="ops", options={})
    gone = datetime.now(UTC) - timedelta(seconds=1)  # its worker was killed mid-step: the lease ran out
    world.records.put(steps.record_key(world.run.run_id, "abort"),
                      json.dumps({**record, "state": "running", "lease_until": gone.isoformat()}).encode())  # fmt: skip
    done = run(world, message)
    assert done["state"] == "done" and done["result"]["aborted"]


def test_a_transient_failure_puts_the_step_back_for_the_platform_to_retry() -> None:
    world = World()
    message = queued(world, "cutover", timeout=5)
    world.bucket.fail = ("put", FREEZE_KEY)
    with pytest.raises(TransientError):
        run(world, message)
    assert stored(world, "cutover")["state"] == "queued" and "503" in stored(world, "cutover")["error"]
    assert run(world, message)["result"]["switch"]


def test_a_refused_step_ends_refused_with_the_reason_and_changes_nothing() -> None:
    world = World()
    done = run(world, queued(world, "rollback"))
    assert done["state"] == "refused" and "has not switched" in done["error"]
    assert not runs.exists(world.records, SWITCHED_KEY) and not runs.exists(world.bucket, FREEZE_KEY)


def test_a_cutover_that_finds_a_difference_ends_done_but_not_ok() -> None:
    world = World()
    world.wrong("jobs/wrong.json")
    done = run(world, queued(world, "cutover", timeout=0.3))
    assert done["state"] == "done" and not done["ok"] and done["result"]["verify"]["different"] == 1


def test_the_dead_letter_fails_a_step_unless_it_ended() -> None:
    world = World()
    message = queued(world, "finish")
    steps.give_up(message, world.records, "gave up after 5 attempts")
    assert stored(world, "finish")["state"] == "failed" and "5 attempts" in stored(world, "finish")["error"]
    assert run(world, message)["state"] == "failed"  # a late delivery does not undo it
    ended = run(world, queued(world, "abort"))
    steps.give_up({**message, "step": "abort"}, world.records, "late")
    assert stored(world, "abort") == ended


def test_what_can_never_work_is_refused_before_anything_runs() -> None:
    world = World()
    with pytest.raises(NotFound, match="no step"):
        steps.request(world.records, world.run.run_id, "delete-everything", by="ops", options={})
    with pytest.raises(NotFound):
        steps.request(world.records, "20260101T000000Z-nope00", "abort", by="ops", options={})
    with pytest.raises(BadRequest):
        steps.handle({"step": "format", "run_id": world.run.run_id}, world.records, lambda run: world.sides)
    with pytest.raises(NotFound):  # a task with no request behind it
        steps.handle({"step": "abort", "run_id": world.run.run_id}, world.records, lambda run: world.sides)


def test_a_task_waits_no_longer_than_an_event_function_may_run() -> None:
    world = World()
    message = queued(world, "cutover", timeout=10_000)
    waits: list[float] = []
    from migrate import cutover

    real = cutover.cutover

    def spy(sides: Any, **given: Any) -> Any:
        waits.append(given["timeout"])
        return real(sides, **given)

    cutover.cutover = spy  # type: ignore[assignment]
    try:
        run(world, message)
    finally:
        cutover.cutover = real  # type: ignore[assignment]
    assert waits == [steps.MAX_WAIT_S] and steps.MAX_WAIT_S * 2 + 60 < steps.LEASE_SECONDS
