"""migrate.live on the in-memory ports: replication, its markers, the drain and the switch."""

from __future__ import annotations

import functools
import threading
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from core import names
from core.errors import Forbidden, NotFound, TransientError
from core.memory import InMemoryDestination, InMemoryObjectStore, InMemorySource, InMemoryTaskQueue
from core.pipeline import DEFERRED_PREFIX, REPLICA_KEY, SWITCHED_KEY, Services
from migrate import live, rules, runs
from migrate.cutover import freeze
from migrate.runs import run_key
from tests.helper import replicating_barriers

RUN = live.Live("20261128T000000Z-abcdef", "c")


def ends(name: str) -> tuple[InMemoryObjectStore, InMemorySource, InMemoryDestination, InMemoryObjectStore]:
    """The bucket's control objects, the bucket as a source, the container, and the run records."""
    return InMemoryObjectStore(), InMemorySource(name), InMemoryDestination(), InMemoryObjectStore()


def test_start_makes_the_container_a_replica_before_replication_starts() -> None:
    bucket, records = InMemoryObjectStore(), InMemoryObjectStore()
    live.start(bucket, records, RUN, "gs://b")
    assert live.live_run(bucket) == live.Live(**{**RUN.__dict__, "since": live.live_run(bucket).since})  # type: ignore[union-attr]
    assert records.head(REPLICA_KEY).updated <= bucket.head(live.LIVE_KEY).updated  # type: ignore[operator]
    with pytest.raises(Exception, match="live-deletes"):
        live.start(bucket, records, live.Live("r", "c", deletes="sometimes"), "gs://b")


class RefusedWrites(InMemoryObjectStore):
    """A bucket this identity may read but not write (Azure's view of GCS)."""

    def put(self, key: str, data: bytes, **kwargs: Any) -> Any:
        raise Forbidden(f"may not write {key}")


def test_a_go_live_whose_bucket_write_fails_leaves_no_replica_marker() -> None:
    bucket, records = RefusedWrites(), InMemoryObjectStore()
    with pytest.raises(Forbidden):
        live.start(bucket, records, RUN, "gs://b")
    with pytest.raises(NotFound):
        records.head(REPLICA_KEY)  # the container takes uploads as before


def test_abort_clears_an_orphaned_replica_marker_and_only_that() -> None:
    bucket, records = InMemoryObjectStore(), InMemoryObjectStore()
    live.start(bucket, records, RUN, "gs://b")
    assert not live.clear_orphaned_replica(bucket, records)  # its run replicates: kept
    records.head(REPLICA_KEY)
    bucket.delete(live.LIVE_KEY)  # as if the bucket write never happened
    assert live.clear_orphaned_replica(bucket, records)
    with pytest.raises(NotFound):
        records.head(REPLICA_KEY)
    assert not live.clear_orphaned_replica(bucket, records)  # nothing left: a second abort changes nothing


def test_duplicate_and_out_of_order_notifications_are_harmless() -> None:
    bucket, source, dest, records = ends("dup")
    source.add("uploads/a.jpg", b"first")
    first = live.Change("uploads/a.jpg", message_id="m1")
    source.add("uploads/a.jpg", b"second")  # the second generation lands before the first one's notification
    second = live.Change("uploads/a.jpg", message_id="m2")
    assert live.replicate(second, bucket, source, dest, records, RUN) == "copied"
    assert live.replicate(first, bucket, source, dest, records, RUN) == "skipped"  # late: the blob is current
    time.sleep(0.002)  # the duplicate's lag differs by a millisecond or two: its record has another name
    assert live.replicate(second, bucket, source, dest, records, RUN) == "skipped"  # a duplicate
    assert b"".join(dest.read_chunks("uploads/a.jpg")) == b"second"
    found = runs.replication(records, RUN.run_id)
    # Only the copy is recorded: a notification that writes nothing (late, or a duplicate) records nothing either.
    assert (found["pending"], found["recent"]) == (0, 1) and found["lag_p50_s"] is not None


class CountingStore(InMemoryObjectStore):
    """Counts the writes (puts and deletes) made to the run's records."""

    def __init__(self) -> None:
        super().__init__()
        self.writes = 0

    def put(self, key: str, data: bytes, **kwargs: Any) -> Any:
        self.writes += 1
        return super().put(key, data, **kwargs)

    def delete(self, key: str, **kwargs: Any) -> None:
        self.writes += 1
        super().delete(key, **kwargs)


def test_a_job_records_superseded_notifications_cost_no_azure_write() -> None:
    """A job record is written three times in a second; notifications delivered after the third write copy once."""
    bucket, source, dest, _ = ends("superseded-cost")
    records = CountingStore()
    generations = [source.add("jobs/j.json", body) for body in (b"PENDING", b"PROCESSING", b"DONE")]
    changes = [live.Change(g.key, generation=g.generation, message_id=f"m{i}", details=g, attempt=1)
               for i, g in enumerate(generations)]  # fmt: skip
    actions = [live.replicate(change, bucket, source, dest, records, RUN) for change in changes]
    assert actions == ["superseded", "superseded", "copied"]
    assert records.writes == 1  # the copy's one bookkeeping write: its change record
    assert b"".join(dest.read_chunks("jobs/j.json")) == b"DONE"
    again = [live.replicate(change, bucket, source, dest, records, RUN) for change in changes]  # redelivered
    assert again == ["superseded", "superseded", "skipped"] and records.writes == 1


def test_a_first_delivery_costs_one_bookkeeping_write_per_copy() -> None:
    bucket, source, dest, _ = ends("one-write")
    records = CountingStore()
    objects = [source.add(f"data/{i}.bin", b"x" * i) for i in range(1, 6)]
    for i, obj in enumerate(objects):
        change = live.Change(obj.key, generation=obj.generation, message_id=f"m{i}", details=obj, attempt=1)
        assert live.replicate(change, bucket, source, dest, records, RUN) == "copied"
    assert records.writes == len(objects)
    (record,) = [i for i in records.list(run_key(RUN.run_id, runs.CHANGES)) if "/m0~" in i.key]
    assert records.get(record.key).data == f"data/1.bin\n{objects[0].generation}".encode()
    assert live.changed_keys(records, RUN.run_id, datetime.now(UTC) - timedelta(minutes=1)) == {o.key for o in objects}


def test_change_records_are_filed_by_ten_seconds_and_listed_from_the_folder_of_since() -> None:
    """A record's folder is its minute and ten seconds; the cutover lists from the folder before ``since``'s on
    (across minutes), so a record filed earlier is not read, however recent its write."""
    assert runs.change_folder(datetime(2026, 12, 6, 17, 49, 39, 999000, tzinfo=UTC)) == "20261206T1749/30/"
    assert runs.change_folder(datetime(2026, 12, 6, 17, 50, 0, tzinfo=UTC)) == "20261206T1750/00/"
    bucket, source, dest, records = ends("folders")
    now = datetime.now(UTC)
    since = (now - timedelta(seconds=90)).replace(second=45)  # at :45, 45 s or more ago: the range crosses a minute
    filed = {
        "data/before.bin": since - timedelta(seconds=25),
        "data/after.bin": since + timedelta(seconds=10),
        "data/last.bin": now,
        "data/behind.bin": since - timedelta(seconds=10),  # filed by a clock behind this one's, written after since
    }
    for i, (key, at) in enumerate(filed.items()):
        obj = source.add(key, b"x")
        change = live.Change(key, generation=obj.generation, message_id=f"m{i}", details=obj, attempt=1)
        assert live.replicate(change, bucket, source, dest, records, RUN, now=lambda at=at: at) == "copied"
    folders = {i.key.split(runs.CHANGES)[1].rsplit("/", 1)[0] for i in records.list(run_key(RUN.run_id, runs.CHANGES))}
    assert folders == {runs.change_folder(at).rstrip("/") for at in filed.values()}
    assert live.changed_keys(records, RUN.run_id, since) == {"data/after.bin", "data/last.bin", "data/behind.bin"}


def test_an_upload_written_after_the_freeze_is_tagged_for_the_target() -> None:
    bucket, source, dest, records = ends("tag")
    source.add("uploads/before.jpg", b"b")
    time.sleep(0.002)
    marker = freeze(bucket)
    time.sleep(0.002)
    source.add("uploads/after.jpg", b"a")
    source.add("results/after.jpg", b"r")
    for key in ("uploads/before.jpg", "uploads/after.jpg", "results/after.jpg"):
        live.replicate(live.Change(key), bucket, source, dest, records, RUN)
    assert names.DEFERRED_KEY not in dest.head("uploads/before.jpg").metadata
    assert dest.head("uploads/after.jpg").metadata[names.DEFERRED_KEY] == marker.updated.isoformat()  # type: ignore[union-attr]
    assert names.DEFERRED_KEY not in dest.head("results/after.jpg").metadata, "only uploads are processed"


def test_an_untagged_copy_of_a_deferred_upload_is_tagged_by_its_replication() -> None:
    bucket, source, dest, records = ends("retag")
    freeze(bucket)
    time.sleep(0.002)
    obj = source.add("uploads/late.jpg", b"late")
    from migrate.copy import Options, copy_object

    copy_object(source, dest, obj, None, Options())  # the bulk copy got there first, with no tag
    assert live.replicate(live.Change(obj.key), bucket, source, dest, records, RUN) == "copied"
    assert names.DEFERRED_KEY in dest.head(obj.key).metadata


class Failing(InMemorySource):
    def read_range(self, *args: Any) -> bytes:
        raise TransientError("GCS answered 503")


def test_a_failed_replication_stays_pending_until_a_retry_or_the_dead_letter() -> None:
    bucket, _, dest, records = ends("fail")
    source = Failing("fail-src")
    source.add("data/x.bin", b"x")
    change = live.Change("data/x.bin", message_id="m1")
    with pytest.raises(TransientError, match="GCS answered 503"):
        live.replicate(change, bucket, source, dest, records, RUN)
    assert runs.replication(records, RUN.run_id)["pending"] == 1
    live.fail(change, records, RUN, "gave up after 5 attempts")
    assert (runs.replication(records, RUN.run_id)["pending"], runs.replication(records, RUN.run_id)["failed"]) == (0, 1)


def test_a_retry_that_copies_ends_the_pending_failure() -> None:
    bucket, source, dest, records = ends("retry")
    obj = source.add("data/x.bin", b"x")
    failing = Failing("retry-src")
    failing.add("data/x.bin", b"x")
    with pytest.raises(TransientError):
        live.replicate(live.Change(obj.key, message_id="m1", attempt=1), bucket, failing, dest, records, RUN)
    assert runs.replication(records, RUN.run_id)["pending"] == 1
    retried = live.Change(obj.key, message_id="m1", attempt=2)
    assert live.replicate(retried, bucket, source, dest, records, RUN) == "copied"
    assert runs.replication(records, RUN.run_id)["pending"] == 0


def test_deletes_are_reported_or_replicated_as_the_run_says() -> None:
    bucket, source, dest, records = ends("del")
    obj = source.add("data/gone.txt", b"x")
    live.replicate(live.Change(obj.key), bucket, source, dest, records, RUN)
    source.delete(obj.key)
    change = live.Change(obj.key, "OBJECT_DELETE", obj.generation)
    assert live.replicate(change, bucket, source, dest, records, RUN) == "delete-reported"
    assert dest.head(obj.key) and list(records.list(run_key(RUN.run_id, "replication/deletes/")))
    deleting = live.Live(RUN.run_id, "c", deletes="replicate")
    assert live.replicate(change, bucket, source, dest, records, deleting) == "deleted"
    assert list(dest.list()) == []


def test_the_drain_waits_for_the_barrier_and_for_a_delete_begun_before_it() -> None:
    bucket, source, dest, records = ends("drain")
    records.put(run_key(RUN.run_id, "replication/inflight/old"), b"data/slow.bin")  # a delete begun before the barrier

    def replicator() -> None:  # what the replicate function does with the barrier's notification, and the slow one
        while not (barriers := list(bucket.list(live.BARRIER_PREFIX))):
            time.sleep(0.01)
        live.replicate(live.Change(barriers[0].key), bucket, source, dest, records, RUN)
        time.sleep(0.3)
        records.delete(run_key(RUN.run_id, "replication/inflight/old"))

    worker = threading.Thread(target=replicator)
    worker.start()
    took = live.drain(bucket, records, RUN.run_id, timeout=10).seconds
    worker.join()
    assert took >= 0.3, "drained before the replication that started before the barrier ended"
    assert list(bucket.list(live.BARRIER_PREFIX)) == []
    with pytest.raises(live.NotSettled, match="did not drain"):
        live.drain(bucket, records, RUN.run_id, timeout=0.2)  # no replicate function: no barrier arrives


@pytest.mark.parametrize("ends_as", ["copied", "superseded", "given up"])
def test_the_drain_waits_for_a_copy_in_flight_when_the_barrier_lands(ends_as: str) -> None:
    """A delivery whose change record was written before the barrier, and whose copy ends after the barrier was
    replicated: drained only once Azure holds that generation (or the object moved on, or the dead letter took it)."""
    copying, replicated = threading.Event(), threading.Event()

    class Slow(InMemorySource):  # the copy's read waits until the barrier has been replicated
        def read_range(self, *args: Any) -> bytes:
            copying.set()
            replicated.wait(10)
            time.sleep(0.3)
            if ends_as == "given up":
                raise TransientError("GCS answered 503")
            if ends_as == "superseded":
                self.add("data/slow.bin", b"rewritten")  # a new generation: the copy in flight fails its proof
            return super().read_range(*args)

    bucket, _, dest, records = ends("inflight")
    source = Slow(f"inflight-{ends_as.replace(' ', '-')}")
    obj = source.add("data/slow.bin", b"slow")
    since = datetime.now(UTC) - timedelta(seconds=1)
    change = live.Change(obj.key, generation=obj.generation, message_id="m9", details=obj, attempt=1)

    def replicator() -> None:
        try:
            live.replicate(change, bucket, source, dest, records, RUN)
        except TransientError:
            live.fail(change, records, RUN, "gave up after 5 attempts")

    worker = threading.Thread(target=replicator)
    worker.start()
    copying.wait(10)
    with replicating_barriers(bucket, source, dest, records, RUN, on_barrier=replicated.set):
        drained = live.drain(bucket, records, RUN.run_id, timeout=10, since=since,
                             settled=live.settled_by(source, dest, RUN))  # fmt: skip
    worker.join()
    assert drained.seconds >= 0.3, "drained before the copy in flight when the barrier landed had ended"
    assert drained.keys == {obj.key}, "what the cutover verifies while frozen"
    outcome = {"copied": obj.generation, "superseded": None, "given up": None}[ends_as]
    blob = next(iter(dest.list()), None)
    assert (blob.metadata["gcs_generation"] if blob else None) == outcome


def _record_change(records: Any, message: str, key: str, generation: str, *, metadata: bool = True) -> None:
    """A change record as ``replicate`` writes it (``metadata=False``: as a writer before the metadata did)."""
    name = run_key(RUN.run_id, f"{runs.CHANGES}{runs.change_folder(datetime.now(UTC))}{message}~5")
    extra = {"metadata": {"key": key, "generation": generation}} if metadata else {}
    records.put(name, f"{key}\n{generation}".encode(), content_type="text/plain", **extra)


@pytest.mark.parametrize("newest_landed", [True, False])
def test_the_drain_waits_for_the_newest_generation_of_each_key_recorded_before_the_barrier(newest_landed: bool) -> None:
    """Three writes of a job record recorded before the barrier: once Azure holds the newest, the older ones have
    settled too (an older copy that never lands is not waited for); while it does not, the drain waits. A change
    recorded after the barrier is neither waited for nor among the keys the cutover verifies."""
    bucket, source, dest, records = ends(f"newest-{newest_landed}")
    since = datetime.now(UTC) - timedelta(seconds=1)
    generations = [source.add("jobs/j.json", body) for body in (b"PENDING", b"PROCESSING", b"DONE")]
    for i, g in enumerate(generations):
        _record_change(records, f"m{i}", g.key, g.generation or "", metadata=i != 1)  # one read from its body
    if newest_landed:
        newest = generations[-1]
        dest.put(replace(newest, metadata={rules.GENERATION_KEY: newest.generation or ""}), b"DONE")
    late: list[str] = []

    def on_barrier() -> None:  # a change recorded once the barrier is there: after it
        if not late:
            late.append(source.add("uploads/late.jpg", b"late").key)
            time.sleep(0.01)
            _record_change(records, "m9", late[0], "1")

    settled, asked = live.settled_by(source, dest, RUN), []

    def counted(key: str, generation: str) -> bool:
        asked.append(generation)
        return settled(key, generation)

    with replicating_barriers(bucket, source, dest, records, RUN, on_barrier=on_barrier):
        drain = functools.partial(live.drain, bucket, records, RUN.run_id, since=since, settled=counted)
        if newest_landed:
            assert drain(timeout=10).keys == {"jobs/j.json"}
            assert asked == [generations[-1].generation], "only the newest generation is looked up"
        else:
            with pytest.raises(live.NotSettled, match="1 replication"):
                drain(timeout=1)


def test_the_switch_names_its_freeze_lifts_the_marker_and_accepts_the_journal() -> None:
    from tests.helper import encode, hopper

    bucket = InMemoryObjectStore()
    marker = freeze(bucket)
    azure = Services.over(InMemoryObjectStore(), InMemoryTaskQueue())
    azure.hold_key = REPLICA_KEY
    azure.store.put(REPLICA_KEY, b"{}")
    tag = marker.updated.isoformat()  # type: ignore[union-attr]
    azure.store.put("uploads/x.jpg", encode(hopper(), "JPEG"), content_type="image/jpeg",
                    metadata={names.MIGRATED_KEY: "1", names.DEFERRED_KEY: tag})  # fmt: skip
    from core.pipeline import accept_upload

    assert accept_upload(azure, "uploads/x.jpg") is None and list(azure.store.list(DEFERRED_PREFIX))
    assert live.switch(azure, bucket, azure.store) == 1
    assert live.switch(azure, bucket, azure.store) == 0, "idempotent"
    assert b'"freeze": "' + tag.encode() in azure.store.get(SWITCHED_KEY).data
    assert len(azure.queue.drain()) == 1  # type: ignore[attr-defined]


def test_a_blob_the_target_wrote_itself_is_never_overwritten_by_replication() -> None:
    bucket, source, dest, records = ends("native")
    source.add("jobs/j.json", b'{"status": "DONE", "from": "gcp"}')
    from core.ports import ObjectDetails

    dest.put(ObjectDetails("jobs/j.json", 2), b"{}")  # Azure's own record, after the switch
    assert live.replicate(live.Change("jobs/j.json"), bucket, source, dest, records, RUN) == "kept"
    assert b"".join(dest.read_chunks("jobs/j.json")) == b"{}" and runs.replication(records, RUN.run_id)["pending"] == 0


class RewrittenWhileRead(InMemorySource):
    """A source whose object gets a new generation just as the replication reads it (a job record updated)."""

    def read_range(self, key: str, generation: str | None, start: int, end: int) -> bytes:
        self.add(key, b"newer")
        return super().read_range(key, generation, start, end)


def test_an_object_rewritten_while_it_is_replicated_is_left_to_its_newer_notification() -> None:
    bucket, _, dest, records = ends("rewritten")
    source = RewrittenWhileRead("rewritten-src")
    source.add("jobs/j.json", b"PENDING")
    assert live.replicate(live.Change("jobs/j.json"), bucket, source, dest, records, RUN) == "superseded"
    assert runs.replication(records, RUN.run_id)["pending"] == 0 and list(dest.list()) == []


def test_a_notification_of_an_older_generation_copies_nothing_and_leaves_nothing_pending() -> None:
    bucket, source, dest, records = ends("older")
    first = source.add("jobs/j.json", b"PENDING")
    source.add("jobs/j.json", b"DONE")
    assert live.replicate(live.Change(first.key, generation=first.generation), bucket, source, dest, records, RUN) == (
        "superseded"
    )
    assert list(dest.list()) == [] and runs.replication(records, RUN.run_id)["pending"] == 0


def test_the_status_line_shows_progress_rate_lag_and_the_cutover() -> None:
    from migrate.cli import status_line

    first = {"run_id": "r", "state": "running", "copied": 10, "skipped": 0, "failed": 0, "objects": 110, "bytes": 10,
             "planned_bytes": 110, "batches_done": 1, "batches_failed": 0, "batches_pending": 10}  # fmt: skip
    now = {**first, "copied": 60, "failed": 1, "bytes": 61,
           "replication": {"lag_p50_s": 0.4, "lag_p95_s": 1.25, "pending": 2, "failed": 0}}  # fmt: skip
    line = status_line(now, first, 10.0)
    assert "[###########.........] 61/110 objects" in line and "61/110 bytes" in line
    assert "5 objects/s, ETA 10 s" in line and "lag p50 0.40 s p95 1.25 s, 2 pending" in line
    assert line.endswith("Azure is a replica")
    switched = {**now, "state": "done", "cutover": {"frozen_seconds": 1.5}}
    assert status_line(switched, first, 20.0).endswith("cut over, frozen 1.50 s")
    back = {**switched, "rollback": {"copied_back": 12, "frozen_seconds": 5.5}}
    assert status_line(back, first, 30.0).endswith("rolled back, 12 copied back: GCP is the primary")


def test_the_verify_waits_for_a_replication_in_flight_and_not_for_a_real_difference() -> None:
    bucket, source, dest, records = ends("patience")
    for key in ("jobs/a.json", "jobs/b.json"):
        source.add(key, b"PENDING")
        live.replicate(live.Change(key), bucket, source, dest, records, RUN)
    source.add("jobs/a.json", b"DONE")  # changed a moment ago: its replication is on its way
    from core.ports import ObjectDetails

    dest.put(ObjectDetails("jobs/b.json", 5), b"WRONG")  # a real difference: nothing will mend it
    keys = ["jobs/a.json", "jobs/b.json"]
    assert live.verify_keys(source, dest, keys, RUN)["different"] == 2
    late = threading.Timer(1.2, lambda: live.replicate(live.Change("jobs/a.json"), bucket, source, dest, records, RUN))
    late.start()
    found = live.verify_keys(source, dest, keys, RUN, patience=3)
    late.join()
    assert (found["same"], found["different"]) == (1, 1), found
    assert [p["key"] for p in found["problems"]] == ["jobs/b.json"]


def test_go_live_opens_the_feed_and_waits_for_its_probe_before_the_listing() -> None:
    from core.memory import InMemoryFeed

    bucket, source, dest, records = ends("golive")
    feed = InMemoryFeed()
    with replicating_barriers(bucket, source, dest, records):
        recorded = live.go_live(bucket, records, feed, RUN, "gs://b", timeout=5)
    assert feed.is_open() and recorded.feed == "made" and live.live_run(bucket).feed == "made"  # type: ignore[union-attr]
    assert list(records.list(run_key(RUN.run_id, "replication/barriers/")))  # the probe went through replication
    assert list(bucket.list(live.BARRIER_PREFIX)) == []


def test_go_live_whose_probe_never_arrives_leaves_nothing_half_live() -> None:
    from core.memory import InMemoryFeed

    bucket, records, feed = InMemoryObjectStore(), InMemoryObjectStore(), InMemoryFeed()
    with pytest.raises(live.NotSettled, match="delivered nothing in 0 s"):
        live.go_live(bucket, records, feed, RUN, "gs://b", timeout=0.2)  # no replicate function
    assert live.live_run(bucket) is None and not feed.is_open()
    with pytest.raises(NotFound):
        records.head(REPLICA_KEY)


def test_go_live_refused_the_feed_writes_nothing_and_a_managed_feed_is_left_alone() -> None:
    from core.memory import InMemoryFeed

    bucket, records = InMemoryObjectStore(), InMemoryObjectStore()
    with pytest.raises(Forbidden, match=r"storage\.buckets\.update"):
        live.go_live(bucket, records, InMemoryFeed(refuse=True), RUN, "gs://b", timeout=0.2)
    assert list(bucket.list()) == [] and list(records.list()) == []
    with replicating_barriers(bucket, InMemorySource("managed"), InMemoryDestination(), records):
        assert live.go_live(bucket, records, None, RUN, "gs://b", timeout=5).feed == ""  # finish will not remove it
