"""migrate.fanout on the in-memory ports: plan, hold uploads/ back, copy every batch, record the run."""

from __future__ import annotations

from typing import Any

from core.errors import NotFound
from core.memory import InMemoryDestination, InMemoryObjectStore, InMemorySource, InMemoryTaskQueue
from core.ports import ObjectDetails
from migrate import fanout, runs
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
    summary: dict[str, Any] = runs.status(records, run.run_id)
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
    assert (runs.load_run(records, run.run_id).max_rate, runs.load_run(records, run.run_id).bwlimit) == (1e6, 1e9)

    def head(key: str) -> ObjectDetails | None:
        return next((b for b in dest.list(key) if b.key == key), None)

    for message in queue.drain():
        assert fanout.process_batch(message, source, dest, records, queue, head)["state"] == "done"


def _head(dest: InMemoryDestination) -> Any:
    def head(key: str) -> ObjectDetails | None:
        return next((b for b in dest.list(key) if b.key == key), None)

    return head


def sides() -> tuple[InMemoryDestination, InMemoryObjectStore, InMemoryTaskQueue]:
    return InMemoryDestination(), InMemoryObjectStore(), InMemoryTaskQueue()


BIG = bytes(range(256)) * 40  # 10 blocks of 1 KiB


def test_block_ranges_cut_an_object_into_parts_and_blocks_grow_past_50000() -> None:
    from migrate.copy import MAX_BLOCKS, block_ranges, block_size_for

    assert block_ranges(10 * 1024, 1024, 3 * 1024) == [(0, 2), (3, 5), (6, 8), (9, 9)]
    assert block_ranges(10 * 1024 + 1, 1024, 5 * 1024) == [(0, 4), (5, 9), (10, 10)]
    assert block_ranges(100, 1024, 3 * 1024) == [(0, 0)]
    tb = 10 * 2**40  # 10 TiB in 8 MiB blocks would be 1.3 M blocks: Azure commits 50,000
    grown = block_size_for(tb, 8 * 2**20)
    assert grown % 2**20 == 0 and -(-tb // grown) <= MAX_BLOCKS and -(-tb // (grown - 2**20)) > MAX_BLOCKS
    assert block_size_for(2**30, 8 * 2**20) == 8 * 2**20


def test_a_big_object_is_copied_in_parts_committed_once_by_the_last_part() -> None:
    source, dest, records, queue = (
        InMemorySource("parts"),
        InMemoryDestination(),
        InMemoryObjectStore(),
        InMemoryTaskQueue(),
    )
    source.add("media/big.bin", BIG, content_type="video/mp4", metadata={"owner": "ops"})
    source.add("media/small.bin", b"small")
    run = fanout.plan(source, records, queue, source_uri="gs://parts", dest_uri="az://c", block_size=1024,
                      part_bytes=3 * 1024)  # fmt: skip
    assert (run.batches, run.objects, run.bytes) == (5, 2, len(BIG) + 5), "4 parts and one batch"
    messages = queue.drain()
    parts = [m for m in messages if "part" in m]
    assert [(m["part"]["first"], m["part"]["last"]) for m in parts] == [(0, 2), (3, 5), (6, 8), (9, 9)]
    states = []
    for message in reversed(messages):  # any order: the part that finds every block staged commits
        assert "media/big.bin" not in {b.key for b in dest.list()}, "visible before every part was staged"
        states.append(fanout.process_batch(message, source, dest, records, queue, _head(dest)))
    assert [s.get("committed") for s in states if "part_of" in s] == [False, False, False, True]
    assert sum(s["bytes"] for s in states if "part_of" in s) == len(BIG)
    blob = dest.head("media/big.bin")
    assert b"".join(dest.read_chunks("media/big.bin")) == BIG
    assert (blob.content_type, blob.metadata["owner"]) == ("video/mp4", "ops")
    again = fanout.process_batch(parts[1], source, dest, records, queue, _head(dest))  # a duplicate delivery
    assert (again["state"], again["committed"]) == ("done", True)
    summary = runs.status(records, run.run_id)
    assert (summary["state"], summary["copied"], summary["batches_done"]) == ("done", 2, 5)
    assert run_verify(source, dest, download=True).to_dict()["same"] == 2


def test_a_corrupted_part_is_never_committed_and_a_copy_proves_it_again() -> None:
    from migrate.copy import run_copy
    from tests.unit.test_migrate_copy import Faulty

    source, dest, records, queue = (
        InMemorySource("bad"),
        InMemoryDestination(),
        InMemoryObjectStore(),
        InMemoryTaskQueue(),
    )
    source.add("big.bin", BIG)
    fanout.plan(source, records, queue, source_uri="gs://bad", dest_uri="az://c", block_size=1024, part_bytes=4096)
    first, *rest = queue.drain()
    faulty = Faulty(source, flip=2)  # the second block of the first part is read wrong
    assert fanout.process_batch(first, faulty, dest, records, queue, _head(dest))["committed"] is False
    states = [fanout.process_batch(m, source, dest, records, queue, _head(dest)) for m in rest]
    assert states[-1]["state"] == "failed" and "CRC32C mismatch" in states[-1]["errors"][0]["error"]
    assert list(dest.list()) == [], "a blob that fails the proof is never made visible"
    outcomes: list[Any] = []
    run_copy(source, dest, options=fanout.Options(block_size=1024), on_outcome=outcomes.append)
    assert "failed the proof; every block was read again" in outcomes[0].notes[0]
    assert b"".join(dest.read_chunks("big.bin")) == BIG


def test_a_part_of_an_object_rewritten_since_the_plan_fails_with_the_reason() -> None:
    source, dest, records, queue = (
        InMemorySource("moved"),
        InMemoryDestination(),
        InMemoryObjectStore(),
        InMemoryTaskQueue(),
    )
    source.add("big.bin", BIG)
    run = fanout.plan(source, records, queue, source_uri="gs://moved", dest_uri="az://c", block_size=1024,
                      part_bytes=5120)  # fmt: skip
    source.add("big.bin", BIG[::-1])  # a new generation
    states = [fanout.process_batch(m, source, dest, records, queue, _head(dest)) for m in queue.drain()]
    assert all(s["state"] == "failed" and "rewritten since the plan" in s["errors"][0]["error"] for s in states)
    assert list(dest.list()) == [] and runs.status(records, run.run_id)["state"] == "failed"


def lanes_bucket(name: str, objects: int) -> InMemorySource:
    source = InMemorySource(name)
    for i in range(objects):
        source.add(f"other/{i:03d}", b"x" * (i + 1))
    for i in range(3):
        source.add(f"uploads/{i}.jpg", b"u" * (i + 1))
    return source


def test_max_batches_keeps_that_many_in_flight_and_every_batch_still_runs() -> None:
    source, dest, records, queue = (
        lanes_bucket("lanes", 7),
        InMemoryDestination(),
        InMemoryObjectStore(),
        InMemoryTaskQueue(),
    )
    run = fanout.plan(source, records, queue, source_uri="gs://lanes", dest_uri="az://c", max_objects=1,
                      max_batches=2)  # fmt: skip
    assert (run.batches, run.held_batches) == (10, [8, 9, 10])
    in_flight = queue.drain()
    assert [m["batch"] for m in in_flight] == [1, 2]
    order, widest = [], 2
    while in_flight:
        message = in_flight.pop(0)
        if message["batch"] == 4:  # the platform gave up on this one: its lane goes on all the same
            fanout.mark_failed(records, message, "gave up after 5 attempts", queue)
        else:
            fanout.process_batch(message, source, dest, records, queue, _head(dest))
        order.append(message["batch"])
        in_flight += queue.drain()
        widest = max(widest, len(in_flight))
        if message["batch"] == 3:  # a duplicate delivery releases nothing twice
            fanout.process_batch(message, source, dest, records, queue, _head(dest))
            assert queue.drain() == []
    assert widest == 2, "never more than max_batches in flight"
    assert sorted(order) == list(range(1, 11)) and len(order) == 10
    assert set(order[-3:]) == {8, 9, 10}, "uploads/ last, after every other batch"
    summary = runs.status(records, run.run_id)
    assert (summary["batches_done"], summary["batches_failed"]) == (9, 1)
    assert summary["copied"] + summary["skipped"] == 9 and len(list(dest.list())) == 9


def test_a_lane_batch_listed_after_its_predecessor_finished_is_released_by_the_planner() -> None:
    source, dest, records, queue = (
        lanes_bucket("late", 6),
        InMemoryDestination(),
        InMemoryObjectStore(),
        InMemoryTaskQueue(),
    )
    processed: list[int] = []

    class WorkersDuringListing:
        """Lists the source; after each object, the workers finish whatever is queued."""

        def list(self, prefix: str = "", **offsets: Any) -> Any:
            for obj in source.list(prefix, **offsets):
                yield obj
                for message in queue.drain():
                    fanout.process_batch(message, source, dest, records, queue, _head(dest))
                    processed.append(message["batch"])

        def read_range(self, *args: Any) -> bytes:
            return source.read_range(*args)

        def signed_url(self, *args: Any) -> str:
            return source.signed_url(*args)

        def noncurrent_versions(self, prefix: str = "") -> int:
            return 0

    run = fanout.plan(WorkersDuringListing(), records, queue, source_uri="gs://late", dest_uri="az://c",  # type: ignore[arg-type]
                      max_objects=1, max_batches=1)  # fmt: skip
    while messages := queue.drain():
        for message in messages:
            fanout.process_batch(message, source, dest, records, queue, _head(dest))
            processed.append(message["batch"])
    assert processed == list(range(1, run.batches + 1)), "each batch once, in its lane's order"
    assert runs.status(records, run.run_id)["state"] == "done"


def test_in_a_live_run_an_object_rewritten_during_its_batch_is_left_to_replication() -> None:
    class Rewriting(InMemorySource):
        def read_range(self, key: str, generation: str | None, start: int, end: int) -> bytes:
            if key == "jobs/1.json" and generation == first.generation:
                self.add(key, b"DONE")  # the job record moves on while its batch copies it
            return super().read_range(key, generation, start, end)

    for live in (False, True):
        source, (dest, records, queue) = Rewriting(f"rewriting-{live}"), sides()
        first = source.add("jobs/1.json", b"PENDING")
        fanout.plan(source, records, queue, source_uri="gs://r", dest_uri="az://c", live=live)
        (state,) = [fanout.process_batch(m, source, dest, records, queue, _head(dest)) for m in queue.drain()]
        assert (state["failed"], state["skipped"]) == ((0, 1) if live else (1, 0)), live
