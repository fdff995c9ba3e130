"""migrate.fanout on the in-memory ports: plan, hold uploads/ back, copy every batch, record the run."""

from __future__ import annotations

from typing import Any

from core.errors import NotFound
from core.memory import InMemoryDestination, InMemoryObjectStore, InMemorySource, InMemoryTaskQueue
from core.ports import ObjectDetails
from migrate import fanout
from migrate.copy import phases
from migrate.verify import run_verify


def bucket(name: str) -> InMemorySource:
    source = InMemorySource(name)
    for key in (
        "uploads/a.jpg",
        "uploads/b.jpg",
        "jobs/1.json",
        "results/a.jpg",
        "other/x.bin",
        "_cutover/frozen.json",
    ):
        source.add(key, key.encode() * 10)
    return source


def test_phases_put_jobs_and_results_first_and_uploads_last_and_leave_control_objects() -> None:
    found = [(held, [o.key for o in objects]) for held, objects in phases(bucket("phases"), "")]
    assert found == [
        (False, ["jobs/1.json"]),
        (False, ["results/a.jpg"]),
        (False, ["other/x.bin"]),
        (True, ["uploads/a.jpg", "uploads/b.jpg"]),
    ]


def test_phases_list_each_object_once() -> None:
    source = bucket("once")
    for key in ("a-first.txt", "jobs0-not-a-job", "jobsz", "results0.txt", "uploads0", "zz-last"):
        source.add(key, b"k")
    listed: list[str] = []

    class Counting:
        def list(self, prefix: str = "", **offsets: Any) -> Any:
            for obj in source.list(prefix, **offsets):
                listed.append(obj.key)
                yield obj

    order = [o.key for _, objects in phases(Counting(), "") for o in objects]  # type: ignore[arg-type]
    assert sorted(listed) == sorted(set(listed)), "an object was listed twice"
    assert order[:2] == ["jobs/1.json", "results/a.jpg"] and order[-2:] == ["uploads/a.jpg", "uploads/b.jpg"]
    assert set(order) == {o.key for o in source.list()} - {"_cutover/frozen.json"}


def test_a_run_copies_everything_with_uploads_released_last() -> None:
    source, dest, records, queue = bucket("run"), InMemoryDestination(), InMemoryObjectStore(), InMemoryTaskQueue()
    run = fanout.plan(source, records, queue, source_uri="gs://run", dest_uri="az://c", max_objects=1)
    assert (run.batches, run.objects, len(run.held_batches)) == (5, 5, 2)
    queued = queue.drain()
    assert len(queued) == 3, "the two uploads/ batches wait"

    def head(key: str) -> ObjectDetails | None:
        try:
            return dest.head(key)
        except NotFound:
            return None

    copied_order: list[str] = []
    while queued:
        for message in queued:
            state = fanout.process_batch(message, source, dest, records, queue, head)
            assert state["state"] == "done"
        copied_order += [b.key for b in dest.list() if b.key not in copied_order]
        queued = queue.drain()  # the held batches, released once the others are done
    assert copied_order[-2:] == ["uploads/a.jpg", "uploads/b.jpg"]
    summary: dict[str, Any] = fanout.status(records, run.run_id)
    assert (summary["state"], summary["copied"]) == ("done", 5)
    assert run_verify(source, dest, download=True).to_dict()["same"] == 5
    assert "_cutover/frozen.json" not in {b.key for b in dest.list()}


def test_a_repeated_batch_copies_nothing_again() -> None:
    source, dest, records, queue = bucket("repeat"), InMemoryDestination(), InMemoryObjectStore(), InMemoryTaskQueue()
    fanout.plan(source, records, queue, source_uri="gs://repeat", dest_uri="az://c", max_objects=10)
    message = queue.drain()[0]  # jobs/: a phase is never mixed into another's batch

    def head(key: str) -> ObjectDetails | None:
        return next((b for b in dest.list(key) if b.key == key), None)

    first = fanout.process_batch(message, source, dest, records, queue, head)
    again = fanout.process_batch(message, source, dest, records, queue, head)
    assert (first["copied"], again["copied"], again["skipped"]) == (1, 0, 1)


def test_a_run_keeps_its_caps_and_refuses_a_cap_of_zero() -> None:
    import pytest

    from core.errors import BadRequest

    source, dest, records, queue = bucket("caps"), InMemoryDestination(), InMemoryObjectStore(), InMemoryTaskQueue()
    with pytest.raises(BadRequest, match="max_rate"):
        fanout.plan(source, records, queue, source_uri="gs://caps", dest_uri="az://c", max_rate=0)
    assert list(records.list("")) == [] and queue.drain() == []
    run = fanout.plan(source, records, queue, source_uri="gs://caps", dest_uri="az://c", max_rate=1e6, bwlimit=1e9)
    assert (fanout.load_run(records, run.run_id).max_rate, fanout.load_run(records, run.run_id).bwlimit) == (1e6, 1e9)

    def head(key: str) -> ObjectDetails | None:
        return next((b for b in dest.list(key) if b.key == key), None)

    for message in queue.drain():
        assert fanout.process_batch(message, source, dest, records, queue, head)["state"] == "done"
