"""The live migration's use cases (``migrate.cutover``) on the in-memory ports, every branch: no CLI module is
imported here, so none can hold their logic."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from core.errors import NotFound, Refused, TransientError
from core.memory import (
    InMemoryDestination,
    InMemoryFeed,
    InMemoryObjectStore,
    InMemorySource,
    InMemoryTaskQueue,
)
from core.pipeline import FREEZE_KEY, REPLICA_KEY, SWITCHED_KEY
from core.ports import ObjectDetails
from migrate import cutover, fanout, live, runs
from migrate.locations import Location
from tests.helper import replicating_barriers

SOURCE, DEST = Location("gs", "b", ""), Location("az", "c", "")


class Flaky(InMemoryObjectStore):
    """A store whose chosen operation on a chosen key fails once, as a cloud's transient error does."""

    def __init__(self) -> None:
        super().__init__()
        self.fail: tuple[str, str] | None = None

    def _maybe(self, operation: str, key: str) -> None:
        if self.fail is not None and self.fail[0] == operation and key.startswith(self.fail[1]):
            self.fail = None
            raise TransientError(f"{operation} {key}: the service answered 503")

    def put(self, key: str, data: bytes, **kwargs: Any) -> Any:
        self._maybe("put", key)
        return super().put(key, data, **kwargs)

    def delete(self, key: str) -> None:
        self._maybe("delete", key)
        super().delete(key)


class World:
    """A live run of bucket ``b`` into container ``c``, with a replicate function that the test drives."""

    def __init__(self, objects: int = 3) -> None:
        self.bucket, self.records = Flaky(), Flaky()
        self.source, self.dest = InMemorySource("b"), InMemoryDestination()
        self.feed = InMemoryFeed()
        self.sides = cutover.Sides(SOURCE, DEST, self.bucket, self.records, InMemoryTaskQueue(), InMemoryTaskQueue(),
                                   self.source, self.dest, self.feed)  # fmt: skip
        run_id = runs.new_run_id()
        self.run = live.Live(run_id, "c")
        with self.replicating():  # the probe of go_live reaches the replicate function
            self.run = live.go_live(self.bucket, self.records, self.feed, self.run, "gs://b", timeout=5)
        fanout.plan(self.source, self.records, InMemoryTaskQueue(), run_id=run_id, source_uri="gs://b",
                    dest_uri="az://c", live=True)  # fmt: skip
        time.sleep(0.002)
        for index in range(objects):
            self.change(f"jobs/{index}.json", b"DONE %d" % index)

    def change(self, key: str, data: bytes) -> None:
        """An object written into the bucket, and its notification replicated."""
        self.source.add(key, data)
        assert live.replicate(live.Change(key), self.bucket, self.source, self.dest, self.records, self.run) == "copied"

    def wrong(self, key: str) -> None:
        """A replicated object whose blob differs from it: a difference nothing will mend."""
        self.change(key, b"right")
        self.dest.put(ObjectDetails(key, 5), b"WRONG")

    def replicating(self, on_barrier: Any = None) -> Any:
        """The replicate function in the background: it takes each drain's barrier (after ``on_barrier()``)."""
        return replicating_barriers(self.bucket, self.source, self.dest, self.records, self.run, on_barrier)

    def exists(self, store: InMemoryObjectStore, key: str) -> bool:
        return runs.exists(store, key)

    def report(self, step: str) -> dict[str, Any] | None:
        found = runs.status(self.records, self.run.run_id)
        return found.get(step)


def cut(world: World, **given: Any) -> cutover.CutoverResult:
    with world.replicating():
        return cutover.cutover(world.sides, timeout=given.pop("timeout", 5.0), **given)


def test_a_cutover_verifies_freezes_drains_switches_and_records_what_it_found() -> None:
    world = World()
    said: list[str] = []
    result = cut(world, by="ops@example.test", progress=said.append)
    assert result.switched and result.ok and not result.reason
    assert (result.verified, result.different, result.final_differences) == (3, 0, 0)
    assert result.frozen_seconds is not None and result.drain_seconds is not None
    assert world.exists(world.bucket, FREEZE_KEY) and world.exists(world.records, SWITCHED_KEY)
    assert not world.exists(world.records, REPLICA_KEY)
    assert [line[:2] for line in said] == ["0.", "1.", "2.", "3.", "4.", "5."]
    recorded = world.report("cutover")
    assert recorded == result.record() and recorded["by"] == "ops@example.test"
    assert recorded["final_verify"]["missing"] == 0


def test_a_second_cutover_reports_the_first_and_changes_nothing() -> None:
    world = World()
    first = cut(world)
    again = cut(world)
    assert again.already and again.switched and again.frozen_seconds == first.frozen_seconds
    assert again.record() == first.record()


def test_a_difference_before_the_freeze_freezes_nothing() -> None:
    world = World()
    world.wrong("jobs/wrong.json")
    result = cut(world, timeout=0.3)
    assert not result.switched and not result.frozen and "differ" in result.reason
    assert result.different == 1 and [d.key for d in result.differences] == ["jobs/wrong.json"]
    assert result.record()["verify"]["different"] == 1
    assert not world.exists(world.bucket, FREEZE_KEY) and world.exists(world.records, REPLICA_KEY)
    assert world.report("cutover") is None


def test_what_replication_copies_during_the_first_pass_is_verified_before_the_freeze() -> None:
    """At least two passes before the freeze: one replicated during the first is not left for the frozen one."""
    world = World()
    verify = live.verify_keys
    calls = 0

    def during_the_first(*args: Any, **kwargs: Any) -> dict[str, Any]:
        nonlocal calls
        calls += 1
        if calls == 1:
            world.wrong("jobs/during.json")
        return verify(*args, **kwargs)

    live.verify_keys = during_the_first  # type: ignore[assignment]
    try:
        result = cut(world, timeout=0.3)
    finally:
        live.verify_keys = verify  # type: ignore[assignment]
    assert not result.frozen and not world.exists(world.bucket, FREEZE_KEY), result
    assert [d.key for d in result.differences] == ["jobs/during.json"]


def test_a_difference_while_frozen_leaves_gcp_frozen_and_azure_a_replica_until_abort() -> None:
    world = World()
    late = threading.Event()
    put = world.bucket.put

    def before_the_barrier(key: str, data: bytes, **kwargs: Any) -> Any:
        if key.startswith(live.BARRIER_PREFIX) and not late.is_set():
            late.set()
            world.wrong("jobs/late.json")  # replicated after the passes and the freeze, before the barrier
            time.sleep(0.002)
        return put(key, data, **kwargs)

    world.bucket.put = before_the_barrier  # type: ignore[method-assign]
    with world.replicating():
        result = cutover.cutover(world.sides, timeout=0.5)
    assert not result.switched and result.frozen and "while frozen" in result.reason
    assert result.different == 1 and [d.key for d in result.differences] == ["jobs/late.json"]
    assert result.record()["verify"]["different"] == 1
    assert world.exists(world.bucket, FREEZE_KEY) and world.exists(world.records, REPLICA_KEY)
    assert not world.exists(world.records, SWITCHED_KEY) and world.report("cutover") is None
    aborted = cutover.abort(world.sides, by="ops")
    assert aborted.aborted and not world.exists(world.bucket, FREEZE_KEY)
    assert world.report("abort")["by"] == "ops"  # type: ignore[index]


def test_a_change_after_the_barrier_is_left_to_replication_and_the_full_verify() -> None:
    """What replication records after the barrier (an upload left for Azure, a job GCP ends while frozen) is not
    the frozen verify's: the switch goes on, replication goes on after it, and the full verify reports what
    differs then."""
    world = World()
    late = threading.Event()

    def after_the_barrier() -> None:
        if not late.is_set():
            late.set()
            world.wrong("jobs/late.json")

    with world.replicating(on_barrier=after_the_barrier):
        result = cutover.cutover(world.sides, timeout=0.5)
    assert result.switched and result.different == 0, result
    assert not result.ok and result.final_differences == 1, "the full verify after the switch finds it"


def test_a_drain_that_never_ends_leaves_gcp_frozen_and_says_so() -> None:
    world = World()
    result = cutover.cutover(world.sides, timeout=0.3)  # no replicate function: the barrier never arrives
    assert not result.switched and result.frozen and "did not drain" in result.reason
    assert world.exists(world.bucket, FREEZE_KEY) and not world.exists(world.records, SWITCHED_KEY)
    assert cut(world).switched  # run again with replication up: it goes on from the freeze


def test_a_final_verify_that_finds_a_difference_is_not_ok() -> None:
    world = World()
    world.source.add("jobs/never-copied.json", b"x")  # neither bulk-copied nor replicated
    result = cut(world)
    assert result.switched and not result.ok and result.final_differences == 1
    assert cut(world, final_verify=False).already  # switched: a second run reports the first


@pytest.mark.parametrize("step", ["the freeze", "the switch", "the record"])
def test_a_transient_failure_in_a_cutover_step_raises_and_a_second_run_finishes(step: str) -> None:
    world = World()
    if step == "the freeze":
        world.bucket.fail = ("put", FREEZE_KEY)
    else:
        key = SWITCHED_KEY if step == "the switch" else runs.run_key(world.run.run_id, "cutover.json")
        world.records.fail = ("put", key)
    with pytest.raises(TransientError):
        cut(world)
    result = cut(world)
    assert result.switched and not result.already and world.report("cutover") == result.record()


def test_an_abort_refuses_after_the_switch_and_runs_twice_before_it() -> None:
    world = World()
    cutover.freeze(world.bucket)
    world.bucket.fail = ("delete", FREEZE_KEY)
    with pytest.raises(TransientError):
        cutover.abort(world.sides)
    assert cutover.abort(world.sides).aborted and cutover.abort(world.sides).accepted == 0
    assert not world.exists(world.bucket, FREEZE_KEY)
    cut(world)
    with pytest.raises(Refused, match="switched already"):
        cutover.abort(world.sides)


def test_a_rollback_needs_a_switch_and_a_second_one_reports_the_first() -> None:
    world = World()
    with pytest.raises(Refused, match="has not switched"):
        cutover.rollback(world.sides)
    cut(world)
    world.records.fail = ("put", REPLICA_KEY)  # the hold
    with pytest.raises(TransientError):
        cutover.rollback(world.sides, timeout=5)
    back = cutover.rollback(world.sides, timeout=5, by="ops")
    assert back.rolled_back and not back.already and back.by == "ops"
    assert not world.exists(world.records, SWITCHED_KEY) and not world.exists(world.bucket, FREEZE_KEY)
    again = cutover.rollback(world.sides)
    assert again.already and again.rolled_back and again.copied_back == back.copied_back
    with pytest.raises(Refused, match="rollback is under way"):  # held and switched: only rollback goes on
        world.records.put(SWITCHED_KEY, b"{}")
        cutover.abort(world.sides)


def test_finish_after_a_cutover_ends_replication_and_the_way_back() -> None:
    world = World()
    with pytest.raises(Refused, match="neither cut over nor was aborted"):
        cutover.finish(world.sides)
    cutover.freeze(world.bucket)
    with pytest.raises(Refused, match="frozen for a cutover"):
        cutover.finish(world.sides)
    cut(world)
    bookkeeping = [i.key for i in world.records.list(runs.run_key(world.run.run_id, "replication/changes/"))]
    assert bookkeeping
    world.records.fail = ("delete", bookkeeping[1])
    with pytest.raises(TransientError):
        cutover.finish(world.sides, by="ops")
    assert live.live_run(world.bucket) is None  # replication stopped before the failure
    assert not world.feed.is_open()  # the bucket notification plan --live made is gone
    done = cutover.finish(world.sides, by="ops")  # the second run removes what the first left
    assert done.already and done.after == "cutover"
    assert list(world.records.list(runs.run_key(world.run.run_id, "replication/changes/"))) == []
    assert world.report("finish") == done.record() and done.by == "ops"
    kept = {i.key.rsplit("/", 1)[-1] for i in world.records.list(runs.run_key(world.run.run_id, ""))}
    assert {"run.json", "cutover.json"} <= kept
    for step in (cutover.rollback, cutover.cutover, cutover.abort):
        with pytest.raises(Refused):
            step(world.sides)
    with pytest.raises(Refused, match="finished"):
        cutover.rollback(world.sides)


def test_finish_after_an_abort_keeps_gcp_the_primary_and_azure_a_replica() -> None:
    world = World()
    cutover.abort(world.sides)
    assert world.feed.is_open()
    done = cutover.finish(world.sides)
    assert done.after == "abort" and done.removed > 0 and not done.already and done.feed_removed
    assert not world.feed.is_open()
    assert world.exists(world.records, REPLICA_KEY) and not world.exists(world.bucket, FREEZE_KEY)
    assert cutover.finish(world.sides).already
    with pytest.raises(NotFound):
        world.bucket.head(live.LIVE_KEY)
    recorded = runs.status(world.records, world.run.run_id)
    assert recorded["finish"]["after"] == "abort" and recorded["abort"]["aborted"]


def test_no_step_acts_on_a_container_no_live_run_replicates_into() -> None:
    world = World()
    other = cutover.Sides(SOURCE, Location("az", "other", ""), world.bucket, InMemoryObjectStore(),
                          InMemoryTaskQueue(), InMemoryTaskQueue(), world.source, InMemoryDestination())  # fmt: skip
    for step in (cutover.cutover, cutover.rollback, cutover.finish):
        with pytest.raises(Refused, match="no live run"):
            step(other)
    with pytest.raises(Refused, match="not the live run"):
        cutover.cutover(world.sides, run_id="20260101T000000Z-other")
    assert not world.exists(world.bucket, FREEZE_KEY)


def test_a_cutover_needs_a_source_and_a_destination_to_verify() -> None:
    world = World()
    with pytest.raises(ValueError, match="verifies"):
        cutover.cutover(cutover.Sides(SOURCE, DEST, world.bucket, world.records, InMemoryTaskQueue(),
                                      InMemoryTaskQueue()))  # fmt: skip
