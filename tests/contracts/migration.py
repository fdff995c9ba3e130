"""The migration's port contracts (``core.ports.Source`` and ``Destination``), mixed into a test class.

The same tests run on the in-memory fakes (tests/unit) and on fake-gcs-server and Azurite
(tests/integration). A Source test class provides ``source`` and ``add(key, data, **properties)``;
a Destination test class provides ``dest``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

import pytest

from core import crc32c
from core.errors import BadRequest, NotFound
from core.ports import Destination, ObjectDetails, Source

Add = Callable[..., None]


class SourceContract:
    @pytest.fixture
    def source(self) -> Source:  # pragma: no cover - provided by the subclass
        raise NotImplementedError

    @pytest.fixture
    def add(self) -> Add:  # pragma: no cover - provided by the subclass
        raise NotImplementedError

    def test_list_reports_sizes_generations_and_checksums_in_key_order(self, source: Source, add: Add) -> None:
        payloads = {"b/2.bin": b"two" * 100, "a/1.bin": b"one", "b/ünï #?.bin": b"", "c.txt": bytes(range(256))}
        for key, data in payloads.items():
            add(key, data)
        listed = list(source.list())
        assert [o.key for o in listed] == sorted(payloads)
        for obj in listed:
            data = payloads[obj.key]
            assert obj.size == len(data) and obj.generation
            assert obj.crc32c == crc32c.to_gcs(crc32c.value(data))
            assert obj.md5 in (None, hashlib.md5(data).hexdigest())
        assert [o.key for o in source.list("b/")] == ["b/2.bin", "b/ünï #?.bin"]

    def test_offsets_bound_the_listing(self, source: Source, add: Add) -> None:
        for key in ("a", "jobs/1", "jobs0", "jobsz", "results/1", "z"):
            add(key, b"x")
        assert [o.key for o in source.list(end_offset="jobs/")] == ["a"]
        assert [o.key for o in source.list(start_offset="jobs0", end_offset="results/")] == ["jobs0", "jobsz"]
        assert [o.key for o in source.list(start_offset="results0")] == ["z"]

    def test_read_range_is_inclusive_and_exact(self, source: Source, add: Add) -> None:
        data = bytes(range(256)) * 8
        add("r.bin", data)
        generation = next(iter(source.list("r.bin"))).generation
        assert source.read_range("r.bin", generation, 0, len(data) - 1) == data
        assert source.read_range("r.bin", generation, 10, 10) == data[10:11]
        assert source.read_range("r.bin", generation, 1000, 2047) == data[1000:]

    def test_a_missing_object_or_generation_is_not_found(self, source: Source, add: Add) -> None:
        with pytest.raises(NotFound):
            source.read_range("nope.bin", None, 0, 0)
        add("g.bin", b"first")
        old = next(iter(source.list("g.bin"))).generation
        add("g.bin", b"second")
        with pytest.raises(NotFound):
            source.read_range("g.bin", old, 0, 4)


class DestinationContract:
    @pytest.fixture
    def dest(self) -> Destination:  # pragma: no cover - provided by the subclass
        raise NotImplementedError

    def details(self, key: str, data: bytes, **properties: Any) -> ObjectDetails:
        return ObjectDetails(key=key, size=len(data), md5=hashlib.md5(data).hexdigest(), **properties)

    def test_put_keeps_the_bytes_and_every_property(self, dest: Destination) -> None:
        data = b"\x00payload\xff" * 50
        dest.put(self.details("p/ünï #1.bin", data, content_type="text/plain", content_language="en",
                              cache_control="max-age=5", content_disposition="inline", content_encoding="identity",
                              metadata={"owner": "ops"}), data, tier="Cool")  # fmt: skip
        blob = dest.head("p/ünï #1.bin")
        assert (blob.size, blob.md5, blob.content_type, blob.storage_class) == (
            len(data),
            hashlib.md5(data).hexdigest(),
            "text/plain",
            "Cool",
        )
        assert (blob.content_language, blob.cache_control, blob.content_disposition, blob.content_encoding) == (
            "en",
            "max-age=5",
            "inline",
            "identity",
        )
        assert blob.metadata["owner"] == "ops"
        assert b"".join(dest.read_chunks("p/ünï #1.bin")) == data
        assert [b.key for b in dest.list("p/")] == ["p/ünï #1.bin"]

    def test_put_refuses_bytes_that_differ_from_their_md5(self, dest: Destination) -> None:
        with pytest.raises(BadRequest):
            dest.put(self.details("m.bin", b"the real bytes"), b"other bytes!!!")
        with pytest.raises(NotFound):
            dest.head("m.bin")

    def test_staged_blocks_are_invisible_until_committed_in_order(self, dest: Destination) -> None:
        blocks = {"id-0001": b"second ", "id-0000": b"first ", "id-0002": b"third"}
        for block, data in blocks.items():
            dest.stage_block("s.bin", block, data)
        assert dest.staged_blocks("s.bin") == set(blocks)
        with pytest.raises(NotFound):
            dest.head("s.bin")
        data = b"first second third"
        dest.commit(self.details("s.bin", data, content_type="text/plain"), ["id-0000", "id-0001", "id-0002"])
        assert b"".join(dest.read_chunks("s.bin")) == data
        assert dest.head("s.bin").content_type == "text/plain"
        assert dest.staged_blocks("s.bin") == set()

    def test_conditional_writes_refuse_a_blob_that_changed_and_change_nothing(self, dest: Destination) -> None:
        from core.errors import Conflict

        dest.put(self.details("c.bin", b"one"), b"one", if_none_match=True)
        seen = dest.head("c.bin").version
        assert seen
        with pytest.raises(Conflict):
            dest.put(self.details("c.bin", b"two"), b"two", if_none_match=True)
        dest.put(self.details("c.bin", b"three"), b"three", if_match=seen)
        for write in (
            lambda: dest.put(self.details("c.bin", b"four"), b"four", if_match=seen),
            lambda: (
                dest.stage_block("c.bin", "b-0", b"five"),
                dest.commit(self.details("c.bin", b"five"), ["b-0"], if_match=seen),
            ),
            lambda: (
                dest.stage_block("c.bin", "b-1", b"six"),
                dest.commit(self.details("c.bin", b"six"), ["b-1"], if_none_match=True),
            ),
        ):
            with pytest.raises(Conflict):
                write()
        assert b"".join(dest.read_chunks("c.bin")) == b"three"
        dest.stage_block("d.bin", "b-0", b"new")
        dest.commit(self.details("d.bin", b"new"), ["b-0"], if_none_match=True)
        assert b"".join(dest.read_chunks("d.bin")) == b"new"

    def test_read_chunks_gives_the_stored_bytes_of_an_encoded_blob_not_decoded(self, dest: Destination) -> None:
        import gzip

        data = gzip.compress(b"body { color: black }" * 200)
        dest.put(self.details("site.css.gz", data, content_type="text/css", content_encoding="gzip"), data)
        assert b"".join(dest.read_chunks("site.css.gz")) == data  # what verify --download hashes

    def test_missing_keys_are_not_found_and_dot_segments_refused(self, dest: Destination) -> None:
        for call in (lambda: dest.head("nope"), lambda: list(dest.read_chunks("nope")), lambda: dest.delete("nope")):
            with pytest.raises(NotFound):
                call()
        with pytest.raises(BadRequest, match="segment"):
            dest.put(self.details("a/../b", b"x"), b"x")
