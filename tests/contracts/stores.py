"""Contract suites for the ports: mixed into a test class that provides ``store``.

The same tests run on the in-memory fake (tests/unit), fake-gcs-server and
Azurite (tests/integration), so the fake cannot drift from the real stores.
"""

from __future__ import annotations

import hashlib
import json
import threading
from dataclasses import replace

import pytest

from core.errors import BadRequest, Conflict, NotFound, PayloadTooLarge
from core.jobs import Job, JsonJobStore, Status
from core.ports import ObjectStore

ODD_KEYS = [
    "uploads/with space.jpg",
    "uploads/ünïcødé-照片.jpg",
    "uploads/hash#tag.jpg",
    "uploads/question?mark.jpg",
    "uploads/percent%20sign%.jpg",
    "uploads/deep/er/path.jpg",
    "uploads/plus+and&amp=.jpg",
    "uploads/..two-dots-lead.jpg",
    "uploads/.hidden",
    "uploads/a..b/c.jpg",
]
DOT_SEGMENT_KEYS = [
    "uploads/a/../b.jpg",
    "uploads/./b.jpg",
    "uploads/x/..",
    "../b.jpg",
    "uploads/b.jpg/.",
    "..",
    "uploads\\..\\b.jpg",
    "uploads/a\\..\\..\\b.jpg",
]  # Azure reads "\\" as "/"


class ObjectStoreContract:
    """What every ObjectStore must do (see ``core.ports.ObjectStore``)."""

    @pytest.fixture
    def store(self) -> ObjectStore:  # pragma: no cover - provided by the subclass
        raise NotImplementedError

    def test_put_then_get_round_trips_bytes_type_and_metadata(self, store: ObjectStore) -> None:
        data = b"\x00\xffpayload" * 100
        written = store.put("a/b.bin", data, content_type="image/png", metadata={"job_id": "j1", "source": "ü #%?"})
        got = store.get("a/b.bin")
        assert got.data == data
        assert got.info.size == len(data) == written.size
        assert got.info.md5 == hashlib.md5(data).hexdigest() == written.md5
        assert got.info.content_type == "image/png"
        assert dict(got.info.metadata) == {"job_id": "j1", "source": "ü #%?"}
        assert got.info.version == written.version
        assert store.head("a/b.bin") == replace(got.info, updated=store.head("a/b.bin").updated)

    def test_zero_byte_object(self, store: ObjectStore) -> None:
        store.put("empty", b"")
        assert store.get("empty").data == b""
        assert store.head("empty").size == 0

    @pytest.mark.parametrize("key", ODD_KEYS)
    def test_odd_keys_read_back_exactly(self, store: ObjectStore, key: str) -> None:
        store.put(key, key.encode())
        assert store.get(key).data == key.encode()
        assert [info.key for info in store.list("uploads/")] == [key]
        store.delete(key)
        with pytest.raises(NotFound):
            store.head(key)

    def test_get_over_max_bytes_is_refused_with_both_sizes(self, store: ObjectStore) -> None:
        store.put("big.bin", b"x" * 1000)
        assert store.get("big.bin", max_bytes=1000).data == b"x" * 1000
        with pytest.raises(PayloadTooLarge, match="1,000 bytes; the limit is 999"):
            store.get("big.bin", max_bytes=999)
        with pytest.raises(NotFound):
            store.get("nope", max_bytes=1)

    @pytest.mark.parametrize("key", DOT_SEGMENT_KEYS)
    def test_dot_segment_keys_are_refused_and_touch_no_other_object(self, store: ObjectStore, key: str) -> None:
        store.put("uploads/b.jpg", b"the real b")
        store.put("b.jpg", b"the top b")
        for call in (
            lambda: store.put(key, b"an impostor"),
            lambda: store.get(key),
            lambda: store.head(key),
            lambda: list(store.get_stream(key)),
            lambda: store.delete(key),
        ):
            with pytest.raises(BadRequest, match="segment"):
                call()
        assert (store.get("uploads/b.jpg").data, store.get("b.jpg").data) == (b"the real b", b"the top b")
        assert sorted(info.key for info in store.list("")) == ["b.jpg", "uploads/b.jpg"]

    def test_missing_key_raises_not_found_everywhere(self, store: ObjectStore) -> None:
        with pytest.raises(NotFound):
            store.get("nope")
        with pytest.raises(NotFound):
            store.head("nope")
        with pytest.raises(NotFound):
            list(store.get_stream("nope"))
        with pytest.raises(NotFound):
            store.delete("nope")

    def test_not_found_is_also_a_lookup_error(self, store: ObjectStore) -> None:
        with pytest.raises(LookupError):
            store.get("nope")

    def test_if_none_match_creates_only_once(self, store: ObjectStore) -> None:
        store.put("once", b"first", if_none_match=True)
        with pytest.raises(Conflict):
            store.put("once", b"second", if_none_match=True)
        assert store.get("once").data == b"first"

    def test_if_match_accepts_current_version_and_rejects_stale(self, store: ObjectStore) -> None:
        first = store.put("rec", b"v1")
        second = store.put("rec", b"v2", if_match=first.version)
        assert second.version != first.version
        with pytest.raises(Conflict):
            store.put("rec", b"v3", if_match=first.version)
        assert store.get("rec").data == b"v2"
        assert store.get("rec").info.version == second.version

    def test_if_match_on_missing_object_conflicts(self, store: ObjectStore) -> None:
        existing = store.put("other", b"x")
        with pytest.raises(Conflict):
            store.put("missing", b"x", if_match=existing.version)
        with pytest.raises(NotFound):
            store.head("missing")

    def test_delete_removes_only_that_key(self, store: ObjectStore) -> None:
        store.put("d/1", b"1")
        store.put("d/10", b"10")
        store.delete("d/1")
        with pytest.raises(NotFound):
            store.get("d/1")
        assert store.get("d/10").data == b"10"

    def test_stream_returns_all_bytes_in_bounded_chunks(self, store: ObjectStore) -> None:
        data = bytes(range(256)) * 1000  # 256,000 bytes
        store.put("big", data)
        chunks = list(store.get_stream("big", chunk_size=64 * 1024))
        assert b"".join(chunks) == data
        assert all(0 < len(c) <= 64 * 1024 for c in chunks)
        assert len(chunks) == 4

    def test_list_filters_by_prefix_in_key_order_across_pages(self, store: ObjectStore) -> None:
        for name in ["uploads/c", "uploads/a", "results/a", "uploads/b", "uploads/e", "uploads/d"]:
            store.put(name, name.encode())
        listed = list(store.list("uploads/", page_size=2))
        assert [i.key for i in listed] == ["uploads/a", "uploads/b", "uploads/c", "uploads/d", "uploads/e"]
        assert all(i.size == len(i.key) and i.md5 == hashlib.md5(i.key.encode()).hexdigest() for i in listed)
        assert [i.key for i in store.list()] == sorted(["results/a"] + [i.key for i in listed])

    def test_list_is_lazy(self, store: ObjectStore) -> None:
        store.put("p/1", b"1")
        iterator = store.list("p/")
        assert next(iter(iterator)).key == "p/1"

    def test_list_reports_metadata(self, store: ObjectStore) -> None:
        store.put("m/1", b"1", content_type="text/plain", metadata={"k": "v"})
        (info,) = list(store.list("m/"))
        assert info.content_type == "text/plain"
        assert dict(info.metadata) == {"k": "v"}

    def test_concurrent_conditional_writers_one_wins(self, store: ObjectStore) -> None:
        base = store.put("race", b"0")
        results: list[str] = []
        barrier = threading.Barrier(8)

        def writer(n: int) -> None:
            barrier.wait()
            try:
                store.put("race", str(n).encode(), if_match=base.version)
                results.append("won")
            except Conflict:
                results.append("lost")

        threads = [threading.Thread(target=writer, args=(n,)) for n in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(results) == ["lost"] * 7 + ["won"]


class JobStoreContract:
    """What ``JsonJobStore`` must do over any ObjectStore (see ``core.ports.JobStore``)."""

    @pytest.fixture
    def store(self) -> ObjectStore:  # pragma: no cover - provided by the subclass
        raise NotImplementedError

    @pytest.fixture
    def jobs(self, store: ObjectStore) -> JsonJobStore:
        return JsonJobStore(store)

    def make_job(self, job_id: str = "a" * 32) -> Job:
        return Job.new(job_id, "uploads/cat.jpg", "image/jpeg")

    def test_create_then_get(self, jobs: JsonJobStore) -> None:
        job = self.make_job()
        assert jobs.create(job) == job
        assert jobs.get(job.id) == job

    def test_create_twice_keeps_the_first(self, jobs: JsonJobStore) -> None:
        first = jobs.create(self.make_job())
        jobs.update(first.id, lambda j: j.start())
        again = jobs.create(self.make_job())
        assert again.status is Status.PROCESSING
        assert again.attempts == 1

    def test_record_is_one_json_file_with_the_design_fields(self, jobs: JsonJobStore, store: ObjectStore) -> None:
        job = jobs.create(self.make_job())
        stored = store.get(f"jobs/{job.id}.json")
        record = json.loads(stored.data)
        assert set(record) == {
            "id", "status", "source", "result", "content_type", "input_format", "output_format", "error", "attempts",
            "created", "updated",
        }  # fmt: skip
        assert record["status"] == "PENDING"
        assert record["created"].endswith("Z")
        assert stored.info.content_type == "application/json"

    def test_unchanged_update_writes_nothing(self, jobs: JsonJobStore, store: ObjectStore) -> None:
        job = jobs.create(self.make_job())
        jobs.update(job.id, lambda j: j.start())
        done = jobs.update(job.id, lambda j: j.complete("results/cat.jpg"))
        version = store.head(jobs.key(job.id)).version
        assert jobs.update(job.id, lambda j: j.complete("results/other.jpg")) == done
        assert store.head(jobs.key(job.id)).version == version

    def test_unknown_and_malformed_ids_are_not_found(self, jobs: JsonJobStore) -> None:
        with pytest.raises(NotFound):
            jobs.get("0" * 32)
        with pytest.raises(NotFound):
            jobs.get("../uploads/cat")
        with pytest.raises(NotFound):
            jobs.update("0" * 32, lambda j: j)

    def test_twenty_concurrent_updates_lose_nothing(self, jobs: JsonJobStore) -> None:
        job = jobs.create(self.make_job())
        barrier = threading.Barrier(20)
        errors: list[BaseException] = []

        def bump() -> None:
            barrier.wait()
            try:
                jobs.update(job.id, lambda j: replace(j, attempts=j.attempts + 1))
            except BaseException as exc:  # surfaced by the assertion below
                errors.append(exc)

        threads = [threading.Thread(target=bump) for _ in range(20)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        assert jobs.get(job.id).attempts == 20
