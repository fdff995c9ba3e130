"""migrate.copy and migrate.verify on the in-memory Source and Destination: proof, resume, server-side, deep verify."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from core.memory import InMemoryDestination, InMemorySource
from core.ports import ObjectDetails
from migrate.copy import Options, block_id, copy_object, run_copy
from migrate.verify import run_verify

BLOCK = 1024
DATA = bytes(range(256)) * 20  # 5 blocks of 1 KiB


class Killed(Exception):
    pass


class Faulty:
    """Wraps a source: flips one byte of read number ``flip`` (1-based), dies after ``dies_after`` reads."""

    def __init__(self, source: InMemorySource, *, flip: int | None = None, dies_after: int | None = None) -> None:
        self.source, self.flip, self.dies_after, self.reads = source, flip, dies_after, 0

    def list(self, prefix: str = "", **offsets: Any) -> Any:
        return self.source.list(prefix, **offsets)

    def read_range(self, key: str, generation: str | None, start: int, end: int) -> bytes:
        self.reads += 1
        if self.dies_after is not None and self.reads > self.dies_after:
            raise Killed("worker killed mid-copy")
        data = self.source.read_range(key, generation, start, end)
        if self.reads == self.flip:
            data = data[:1] + bytes([data[1] ^ 0x80]) + data[2:]
        return data

    def signed_url(self, key: str, generation: str | None) -> str:
        raise AssertionError("a streamed copy signs nothing")


@pytest.fixture
def source(request: pytest.FixtureRequest) -> InMemorySource:
    return InMemorySource(f"src-{request.node.name}")


def copy(source: Any, dest: InMemoryDestination, **options: Any) -> list[Any]:
    outcomes: list[Any] = []
    run_copy(source, dest, options=Options(block_size=BLOCK, **options), on_outcome=outcomes.append)
    return outcomes


def test_a_copy_carries_bytes_and_every_property(source: InMemorySource) -> None:
    source.add("a/b.txt", b"hello", content_type="text/plain", content_language="en", cache_control="max-age=9",
               content_disposition="inline", content_encoding="identity", metadata={"owner": "ops"})  # fmt: skip
    dest = InMemoryDestination()
    (outcome,) = copy(source, dest)
    assert outcome.action == "copied"
    blob = dest.head("a/b.txt")
    assert (blob.content_type, blob.content_language, blob.cache_control) == ("text/plain", "en", "max-age=9")
    assert (blob.content_disposition, blob.content_encoding, blob.storage_class) == ("inline", "identity", "Hot")
    assert blob.metadata["owner"] == "ops" and blob.metadata["gcs_generation"]
    assert b"".join(dest.read_chunks("a/b.txt")) == b"hello"
    assert run_verify(source, dest, download=True).to_dict()["same"] == 1


def test_a_killed_copy_resumes_and_proves_the_staged_blocks_by_their_crc32c(source: InMemorySource) -> None:
    obj = source.add("big.bin", DATA)
    dest = InMemoryDestination()
    (failed,) = copy(Faulty(source, dies_after=3), dest)
    assert failed.action == "failed" and list(dest.list()) == []
    assert len(dest.staged_blocks("big.bin")) == 3
    again = Faulty(source)
    (resumed,) = copy(again, dest)
    assert resumed.action == "copied" and again.reads == 2
    assert resumed.notes == ["resumed: 3 block(s) staged before were proven by their CRC32C"]
    assert b"".join(dest.read_chunks("big.bin")) == DATA
    assert dest.head("big.bin").md5 == obj.md5


@pytest.mark.parametrize("killed", [False, True])
def test_a_corrupted_read_is_never_committed(source: InMemorySource, killed: bool) -> None:
    source.add("big.bin", DATA)
    dest = InMemoryDestination()
    (failed,) = copy(Faulty(source, flip=1, dies_after=3 if killed else None), dest)
    assert failed.action == "failed" and list(dest.list()) == []
    if not killed:
        assert "CRC32C mismatch" in (failed.error or "")
    (rerun,) = copy(Faulty(source), dest)
    assert rerun.action == "copied"
    assert rerun.notes == [f"{3 if killed else 5} staged block(s) failed the proof; every block was read again"]
    assert b"".join(dest.read_chunks("big.bin")) == DATA


def test_a_corrupted_whole_object_is_never_put(source: InMemorySource) -> None:
    source.add("small.bin", b"0123456789")
    dest = InMemoryDestination()
    (failed,) = copy(Faulty(source, flip=1), dest)
    assert failed.action == "failed" and "CRC32C mismatch" in (failed.error or "")
    assert list(dest.list()) == []


def test_without_a_crc32c_staged_blocks_are_read_again(source: InMemorySource) -> None:
    obj = replace(source.add("big.bin", DATA), crc32c=None)  # an MD5 only: staged blocks cannot be proven
    dest = InMemoryDestination()
    first = Faulty(source, dies_after=3)
    assert copy_object(first, dest, obj, None, Options(block_size=BLOCK)).action == "failed"
    again = Faulty(source)
    outcome = copy_object(again, dest, obj, None, Options(block_size=BLOCK))
    assert outcome.action == "copied" and again.reads == 5 and outcome.notes == []
    assert b"".join(dest.read_chunks("big.bin")) == DATA


def test_staged_ids_carry_the_generation_index_and_crc32c(source: InMemorySource) -> None:
    obj = source.add("big.bin", DATA)
    dest = InMemoryDestination()
    copy(Faulty(source, dies_after=1), dest)
    from core import crc32c

    assert dest.staged_blocks("big.bin") == {block_id(obj.generation, 0, crc32c.value(DATA[:BLOCK]))}


def test_server_side_uses_a_url_where_the_destination_proves_the_md5_and_streams_otherwise(
    source: InMemorySource,
) -> None:
    with_md5 = source.add("a.bin", DATA)
    dest = InMemoryDestination()
    outcome = copy_object(source, dest, with_md5, None, Options(server_side=True, block_size=BLOCK))
    assert outcome.notes == ["server-side: Azure fetched the bytes and proved them against the source MD5"]
    assert b"".join(dest.read_chunks("a.bin")) == DATA
    composite = replace(source.add("b.bin", DATA), md5=None)
    streamed = copy_object(source, dest, composite, None, Options(server_side=True, block_size=BLOCK))
    assert streamed.notes == ["streamed, proven by CRC32C here: no MD5 for Azure to check"]


def test_a_destination_refuses_bytes_that_differ_from_their_md5() -> None:
    details = ObjectDetails(key="x", size=3, md5="0" * 32)
    with pytest.raises(Exception, match="Content-MD5 mismatch"):
        InMemoryDestination().put(details, b"abc")


def test_deep_verify_finds_bytes_changed_under_a_kept_md5(source: InMemorySource) -> None:
    source.add("a.bin", DATA)
    source.add("b.bin", b"properties", content_type="text/plain")
    dest = InMemoryDestination()
    copy(source, dest)
    dest.tamper("a.bin", DATA[::-1])  # same size, same stored MD5
    b = dest.head("b.bin")
    dest.tamper("b.bin", b"properties")
    dest._blobs["b.bin"] = (replace(b, content_type="text/html"), b"properties")
    assert run_verify(source, dest).to_dict() == {"missing": 0, "extra": 0, "different": 1,
                                                  "properties_different": 1, "unverifiable": 0, "same": 1}  # fmt: skip
    deep = run_verify(source, dest, download=True)
    assert deep.to_dict()["different"] == 2 and deep.properties_different == 1
    problems = {d["key"]: d["problems"] for d in deep.different}
    assert problems["a.bin"][0].startswith("downloaded bytes: crc32c")
    assert problems["b.bin"] == ["content-type 'text/plain' != 'text/html'"]


def test_a_dry_run_counts_what_a_copy_cannot_carry(source: InMemorySource) -> None:
    source.add("held.bin", b"h", caveats=("temporary-hold", "custom-time"))
    source.add("custom.bin", b"c", caveats=("custom-time",))
    source.add("csek.bin", b"k", caveats=("customer-supplied-key",))
    source.add("plain.bin", b"p")
    source.add("plain.bin", b"p2")  # the first version is now noncurrent
    dest = InMemoryDestination()
    outcomes: list[Any] = []
    summary = run_copy(source, dest, options=Options(dry_run=True), on_outcome=outcomes.append)
    assert dict(summary.cannot_carry) == {"temporary-hold": 1, "custom-time": 2, "customer-supplied-key": 1}
    assert source.noncurrent_versions() == 1 and source.noncurrent_versions("held") == 0
    by_key = {o.key: o for o in outcomes}
    assert by_key["csek.bin"].action == "failed" and "unreadable without the key" in (by_key["csek.bin"].error or "")
    assert by_key["held.bin"].to_dict()["cannot_carry"] == ["temporary-hold", "custom-time"]
    assert (summary.would_copy, summary.failed) == (3, 1)
    # A real copy carries what it can, reports the rest, and fails only the unreadable object.
    copied = run_copy(source, dest)
    assert (copied.copied, copied.failed) == (3, 1)
    assert "csek.bin" not in {b.key for b in dest.list()}


class Versioned:
    """A source that still serves noncurrent generations (a GCS bucket with versioning)."""

    def __init__(self) -> None:
        self.data: dict[str | None, bytes] = {}

    def read_range(self, key: str, generation: str | None, start: int, end: int) -> bytes:
        return self.data[generation][start : end + 1]

    def signed_url(self, key: str, generation: str | None) -> str:
        raise AssertionError("streamed")


def test_an_older_generation_never_overwrites_a_newer_one(source: InMemorySource) -> None:
    versions = Versioned()
    old = source.add("k.txt", b"old")
    new = source.add("k.txt", b"new")
    versions.data = {old.generation: b"old", new.generation: b"new"}
    dest = InMemoryDestination()
    assert copy_object(versions, dest, new, None, Options()).action == "copied"  # a replication of the newer one
    late = copy_object(versions, dest, old, None, Options())  # a copy that looked before the replication wrote
    assert (late.action, late.notes) == ("skipped", ["another writer stored this generation or a newer one first"])
    assert copy_object(versions, dest, old, dest.head("k.txt"), Options()).action == "skipped"
    assert b"".join(dest.read_chunks("k.txt")) == b"new"


def test_a_blob_changed_between_the_look_and_the_write_is_not_overwritten(source: InMemorySource) -> None:
    versions = Versioned()
    first = source.add("k.txt", b"first")
    second = source.add("k.txt", b"second")
    third = source.add("k.txt", b"third")
    versions.data = {first.generation: b"first", second.generation: b"second", third.generation: b"third"}
    dest = InMemoryDestination()
    copy_object(versions, dest, first, None, Options())
    looked = dest.head("k.txt")
    copy_object(versions, dest, third, looked, Options())  # the newest lands first
    late = copy_object(versions, dest, second, looked, Options())
    assert late.action == "skipped" and b"".join(dest.read_chunks("k.txt")) == b"third"
