"""The migration on the real emulators: fake-gcs-server to Azurite."""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import json
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from google.cloud import storage

from core import crc32c
from core.clouds.azure_blob import AzureBlobObjectStore
from core.clouds.azure_destination import AzureBlobDestination
from core.clouds.gcs_source import GcsSource
from core.errors import BadRequest, NotFound, TransientError
from core.logs import CloudLoggingFormatter
from core.ports import ObjectDetails
from devstack.emulators import Azurite, FakeGcs
from devstack.proxy import ForwardingProxy
from devstack.rclone import rclone
from migrate import rules
from migrate.cli import main
from migrate.copy import Options, block_id, copy_object, run_copy
from migrate.verify import run_verify

pytestmark = pytest.mark.emulator

BLOCK = 256 * 1024


def upload(bucket: str, key: str, data: bytes, **props: str | dict[str, str]) -> None:
    blob = storage.Client(project="local").bucket(bucket).blob(key)
    for name, value in props.items():
        setattr(blob, name, value)
    blob.upload_from_string(data, content_type=str(props.get("content_type", "application/octet-stream")))


def corpus(bucket: str) -> dict[str, bytes]:
    big = bytes(range(256)) * (BLOCK * 3 // 256 + 1000)  # more than 3 blocks
    files = {
        "jobs/0123.json": b'{"id": "0123", "status": "DONE"}',
        "results/cat.jpg": b"\xff\xd8 gray cat",
        "uploads/cat.jpg": b"\xff\xd8 colour cat",
        "uploads/ünïcødé and spaces #?%&+.png": b"\x89PNG odd name",
        "deep/a/b/c/d/e/f/g/h/i/j/object.txt": b"deep",
        "empty.bin": b"",
        "folder/": b"",
        "big/blocks.bin": big,
        "styles/site.css.gz": gzip.compress(b"body { color: black }" * 200),
        "meta/odd-keys.txt": b"metadata",
        "types/a.json": b"{}",
        "types/b.html": b"<p>hi</p>",
        "types/c.svg": b"<svg/>",
    }
    props: dict[str, dict[str, object]] = {
        "styles/site.css.gz": {"content_type": "text/css", "content_encoding": "gzip", "cache_control": "max-age=60"},
        "meta/odd-keys.txt": {"metadata": {"content-owner": "ops", "ok_key": "v", "1st": "x", "ünï": "välue"}},
        "types/a.json": {"content_type": "application/json", "content_language": "en"},
        "types/b.html": {"content_type": "text/html", "content_disposition": "inline"},
        "types/c.svg": {"content_type": "image/svg+xml"},
        "uploads/cat.jpg": {"content_type": "image/jpeg"},
    }
    for key, data in files.items():
        upload(bucket, key, data, **props.get(key, {}))  # type: ignore[arg-type]
    return files


def test_copy_then_verify_then_nothing_left_to_copy(bucket: str, container: str, tmp_path: Path) -> None:
    files = corpus(bucket)
    report = tmp_path / "report.jsonl"
    argv = [f"gs://{bucket}", f"az://{container}", "--workers", "4", "--block-size", str(BLOCK)]
    assert main(["copy", *argv, "--report", str(report), "--json"]) == 0
    lines = [json.loads(line) for line in report.read_text().splitlines()]
    assert {line["key"] for line in lines} == set(files)
    actions = {line["key"]: line["action"] for line in lines}
    assert actions["folder/"] == "skipped"
    assert all(action == "copied" for key, action in actions.items() if key != "folder/")
    dest, source = AzureBlobDestination(container), GcsSource(bucket)
    assert main(["verify", f"gs://{bucket}", f"az://{container}"]) == 0
    assert run_verify(source, dest).same == len(files) - 1
    # Bytes and properties, exactly.
    blobs = {d.key: d for d in dest.list()}
    assert "folder/" not in blobs
    gz = blobs["styles/site.css.gz"]
    assert (gz.content_encoding, gz.cache_control, gz.content_type) == ("gzip", "max-age=60", "text/css")
    assert gz.md5 == hashlib.md5(files["styles/site.css.gz"]).hexdigest()
    odd = blobs["meta/odd-keys.txt"].metadata
    assert {rules.gcs_metadata_key(k) for k in odd} >= {"content-owner", "ok_key", "1st", "ünï"}

    # Each header and metadata value as Azure holds it, read with the SDK and written out here by hand.
    def wire(key: str) -> tuple[dict[str, str | None], dict[str, str]]:
        props = dest.container.get_blob_client(key).get_blob_properties()
        s = props.content_settings
        headers = {"type": s.content_type, "encoding": s.content_encoding, "cache": s.cache_control,
                   "disposition": s.content_disposition, "language": s.content_language}  # fmt: skip
        return headers, {k: v for k, v in props.metadata.items() if not k.startswith("gcs_")}

    none = {"encoding": None, "cache": None, "disposition": None, "language": None}
    assert wire("types/a.json") == ({**none, "type": "application/json", "language": "en"}, {})
    assert wire("types/b.html") == ({**none, "type": "text/html", "disposition": "inline"}, {})
    assert wire("types/c.svg") == ({**none, "type": "image/svg+xml"}, {})
    assert wire("styles/site.css.gz") == ({**none, "type": "text/css", "encoding": "gzip", "cache": "max-age=60"}, {})
    assert wire("meta/odd-keys.txt")[1] == {
        "gcsx_content_2downer": "ops",  # '-' is byte 2d
        "ok_key": "v",
        "gcsx_1st": "x",  # an identifier cannot start with a digit
        "gcsx__c3_bcn_c3_af": "v%C3%A4lue",  # 'ü' and 'ï' as their UTF-8 bytes; the value percent-encoded
    }
    assert blobs["big/blocks.bin"].md5 == hashlib.md5(files["big/blocks.bin"]).hexdigest()
    assert blobs["big/blocks.bin"].storage_class == "Hot"
    # The final sync copies nothing.
    second = run_copy(source, dest, options=Options(block_size=BLOCK))
    assert (second.copied, second.failed) == (0, 0)
    assert second.skipped == len(files)


def test_pipeline_prefixes_are_copied_jobs_and_results_first(bucket: str, container: str) -> None:
    corpus(bucket)
    order: list[str] = []
    run_copy(GcsSource(bucket), AzureBlobDestination(container), workers=1, on_outcome=lambda o: order.append(o.key))
    first_upload = min(i for i, key in enumerate(order) if key.startswith("uploads/"))
    assert all(i < first_upload for i, key in enumerate(order) if key.startswith(("jobs/", "results/")))
    assert all(key.startswith("uploads/") for key in order[first_upload:])


def test_names_azure_rejects_are_reported_or_encoded(
    bucket: str, container: str, capsys: pytest.CaptureFixture[str]
) -> None:
    upload(bucket, "trailing-dot.", b"dot")
    upload(bucket, "fine.txt", b"fine")
    assert main(["copy", f"gs://{bucket}", f"az://{container}", "--json"]) == 1
    out = capsys.readouterr()
    assert json.loads(out.out.strip().splitlines()[-1]) | {"seconds": 0} == {
        "copied": 1, "skipped": 0, "failed": 1, "bytes": 4, "seconds": 0
    }  # fmt: skip
    assert "trailing-dot." in out.err and "--encode-names" in out.err
    assert main(["copy", f"gs://{bucket}", f"az://{container}", "--encode-names"]) == 0
    assert {d.key for d in AzureBlobDestination(container).list()} == {"fine.txt", "trailing-dot%2E"}
    assert main(["verify", f"gs://{bucket}", f"az://{container}"]) == 0


def test_dot_segment_names_never_overwrite_another_blob(
    bucket: str, container: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # Over HTTP 'a/../b.txt' is 'b.txt': a plain REST put would overwrite b.txt with the other object's bytes.
    upload(bucket, "b.txt", b"the real b")
    upload(bucket, "a/../b.txt", b"an impostor")
    upload(bucket, "./c.txt", b"dot c")
    assert {o.key for o in GcsSource(bucket).list()} == {"b.txt", "a/../b.txt", "./c.txt"}  # GCS keeps them apart
    assert main(["copy", f"gs://{bucket}", f"az://{container}"]) == 1
    err = capsys.readouterr().err
    assert "a/../b.txt" in err and "./c.txt" in err and "'..' path segment" in err
    dest, blobs = AzureBlobDestination(container), AzureBlobObjectStore(container)
    assert {d.key for d in dest.list()} == {"b.txt"}
    assert blobs.get("b.txt").data == b"the real b"
    assert main(["copy", f"gs://{bucket}", f"az://{container}", "--encode-names"]) == 0
    assert {d.key for d in dest.list()} == {"b.txt", "a/%2E%2E/b.txt", "%2E/c.txt"}
    assert (blobs.get("b.txt").data, blobs.get("a/%2E%2E/b.txt").data) == (b"the real b", b"an impostor")
    assert main(["verify", f"gs://{bucket}", f"az://{container}"]) == 0
    with pytest.raises(BadRequest, match="segment"):  # the destination refuses it too, whoever calls it
        dest.put(next(o for o in GcsSource(bucket).list() if o.key == "a/../b.txt"), b"x")


def test_prefix_to_prefix(bucket: str, container: str) -> None:
    upload(bucket, "keep/a.txt", b"a")
    upload(bucket, "keep/sub/b.txt", b"b")
    upload(bucket, "other/c.txt", b"c")
    assert main(["copy", f"gs://{bucket}/keep/", f"az://{container}/moved/"]) == 0
    assert {d.key for d in AzureBlobDestination(container).list()} == {"moved/a.txt", "moved/sub/b.txt"}
    assert main(["verify", f"gs://{bucket}/keep/", f"az://{container}/moved/"]) == 0


def test_verify_finds_every_kind_of_difference(bucket: str, container: str, capsys: pytest.CaptureFixture[str]) -> None:
    for key in ("same.txt", "changed.txt", "missing.txt"):
        upload(bucket, key, key.encode())
    for key in ("same-size.txt", "header.txt", "language.txt", "metadata.txt"):
        upload(bucket, key, b"0123456789", content_type="text/plain", content_language="en", metadata={"owner": "ops"})
    assert main(["copy", f"gs://{bucket}", f"az://{container}"]) == 0
    assert main(["verify", f"gs://{bucket}", f"az://{container}"]) == 0
    capsys.readouterr()
    dest = AzureBlobDestination(container)
    dest.container.delete_blob("missing.txt")
    dest.container.upload_blob("changed.txt", b"tampered", overwrite=True)
    dest.container.upload_blob("extra.txt", b"extra")
    # One difference each, everything else as copied: the same size with other bytes (and their MD5), one
    # header, another header, one metadata value.
    client = dest.container.get_blob_client("same-size.txt")
    props = client.get_blob_properties()
    settings = props.content_settings
    settings.content_md5 = bytearray(hashlib.md5(b"9876543210").digest())
    client.upload_blob(b"9876543210", overwrite=True, content_settings=settings, metadata=props.metadata)
    for key, change in (("header.txt", {"content_type": "text/html"}), ("language.txt", {"content_language": "fr"})):
        client = dest.container.get_blob_client(key)
        settings = client.get_blob_properties().content_settings
        for name, value in change.items():
            setattr(settings, name, value)
        client.set_http_headers(settings)
    client = dest.container.get_blob_client("metadata.txt")
    client.set_blob_metadata({**client.get_blob_properties().metadata, "owner": "someone else"})
    found = run_verify(GcsSource(bucket), dest)
    problems = {d["key"]: d["problems"] for d in found.different}
    assert set(problems) == {"changed.txt", "same-size.txt", "header.txt", "language.txt", "metadata.txt"}
    assert [p.split(" ", 1)[0] for p in problems["same-size.txt"]] == ["md5"]
    assert problems["header.txt"] == ["content-type 'text/plain' != 'text/html'"]
    assert problems["language.txt"] == ["content-language 'en' != 'fr'"]
    assert problems["metadata.txt"] == ["metadata owner 'ops' != 'someone else'"]
    assert (found.missing, found.extra, found.same) == (["missing.txt"], ["extra.txt"], 1)
    assert main(["verify", f"gs://{bucket}", f"az://{container}", "--json"]) == 1
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1]) == {
        "missing": 1, "extra": 1, "different": 5, "properties_different": 3, "unverifiable": 0, "same": 1
    }  # fmt: skip


def test_deep_verify_reads_the_bytes_and_each_difference_is_named(
    bucket: str, container: str, capsys: pytest.CaptureFixture[str]
) -> None:
    for key in ("kept-md5.bin", "tier.bin", "archived.bin", "fine.bin"):
        upload(bucket, key, key.encode() * 100, content_type="application/octet-stream")
    assert main(["copy", f"gs://{bucket}", f"az://{container}"]) == 0
    assert main(["verify", f"gs://{bucket}", f"az://{container}", "--download"]) == 0
    dest = AzureBlobDestination(container)
    # Other bytes of the same size under the old Content-MD5 and properties: only a read can tell.
    client = dest.container.get_blob_client("kept-md5.bin")
    props = client.get_blob_properties()
    tampered = b"X" + b"kept-md5.bin" * 100
    # A block list commit stores the Content-MD5 it is given without checking it against the blocks.
    client.stage_block("b1", tampered[: props.size])
    client.commit_block_list(["b1"], content_settings=props.content_settings, metadata=props.metadata)
    assert client.get_blob_properties().content_settings.content_md5 == props.content_settings.content_md5
    dest.container.get_blob_client("tier.bin").set_standard_blob_tier("Cool")
    dest.container.get_blob_client("archived.bin").set_standard_blob_tier("Archive")
    capsys.readouterr()
    plain = run_verify(GcsSource(bucket), dest)
    assert {d["key"]: (d["problems"], d["properties_only"]) for d in plain.different} == {
        "tier.bin": (["tier 'Hot' != 'Cool'"], True)
    }
    assert [u["key"] for u in plain.unverifiable] == ["archived.bin"] and plain.same == 2
    deep = run_verify(GcsSource(bucket), dest, download=True)
    problems = {d["key"]: (d["problems"], d["properties_only"]) for d in deep.different}
    assert set(problems) == {"kept-md5.bin", "tier.bin"}
    assert problems["kept-md5.bin"][0][0].startswith("downloaded bytes: crc32c") and not problems["kept-md5.bin"][1]
    assert deep.to_dict() == {"missing": 0, "extra": 0, "different": 2, "properties_different": 1,
                              "unverifiable": 1, "same": 1}  # fmt: skip
    assert main(["verify", f"gs://{bucket}", f"az://{container}", "--download", "--json"]) == 1
    out = capsys.readouterr().out
    assert json.loads(out.strip().splitlines()[-1]) == deep.to_dict()
    assert "different: kept-md5.bin: downloaded bytes: crc32c" in out and "unverifiable: archived.bin" in out


class Killed(Exception):
    pass


class DyingSource(GcsSource):
    """Reads ``allowed`` ranges, then dies like a killed worker."""

    def __init__(self, bucket: str, allowed: int) -> None:
        super().__init__(bucket)
        self.allowed, self.reads = allowed, 0

    def read_range(self, key: str, generation: str | None, start: int, end: int) -> bytes:
        self.reads += 1
        if self.reads > self.allowed:
            raise Killed("worker killed mid-copy")
        return super().read_range(key, generation, start, end)


def test_a_worker_killed_mid_copy_leaves_no_partial_blob_and_the_rerun_resumes(bucket: str, container: str) -> None:
    data = bytes(range(256)) * (BLOCK * 5 // 256)  # 5 blocks
    upload(bucket, "big.bin", data)
    dest = AzureBlobDestination(container)
    dying = DyingSource(bucket, allowed=3)
    summary = run_copy(dying, dest, options=Options(block_size=BLOCK))
    assert summary.failed == 1
    with pytest.raises(NotFound):
        dest.head("big.bin")  # nothing visible under the final name
    generation = next(GcsSource(bucket).list()).generation
    blocks = [data[i * BLOCK : (i + 1) * BLOCK] for i in range(5)]
    assert dest.staged_blocks("big.bin") == {block_id(generation, i, crc32c.value(blocks[i])) for i in range(3)}
    resumed = DyingSource(bucket, allowed=100)
    outcomes: list[Any] = []
    assert run_copy(resumed, dest, options=Options(block_size=BLOCK), on_outcome=outcomes.append).copied == 1
    assert resumed.reads == 2, "only the blocks not staged before are read again"
    assert outcomes[0].notes == ["resumed: 3 block(s) staged before were proven by their CRC32C"]
    assert dest.head("big.bin").size == len(data)
    assert run_verify(GcsSource(bucket), dest).clean


class FlippingSource(GcsSource):
    """Its first range read comes back with one byte flipped (a corrupted read); then it may die like a worker."""

    def __init__(self, bucket: str, *, dies_after: int | None = None) -> None:
        super().__init__(bucket)
        self.reads, self.dies_after = 0, dies_after

    def read_range(self, key: str, generation: str | None, start: int, end: int) -> bytes:
        self.reads += 1
        if self.dies_after is not None and self.reads > self.dies_after:
            raise Killed("worker killed mid-copy")
        data = super().read_range(key, generation, start, end)
        return flip(data) if self.reads == 1 else data


def flip(data: bytes) -> bytes:
    middle = len(data) // 2
    return data[:middle] + bytes([data[middle] ^ 0x01]) + data[middle + 1 :]


@pytest.mark.parametrize("killed", [False, True], ids=["runs to the end", "killed, then resumed"])
def test_a_corrupted_read_is_never_committed_and_the_rerun_copies_the_source(
    bucket: str, container: str, killed: bool
) -> None:
    data = bytes(range(256)) * (BLOCK * 5 // 256)  # 5 blocks; the first read is flipped
    upload(bucket, "big.bin", data)
    dest = AzureBlobDestination(container)
    outcomes: list[Any] = []
    source = FlippingSource(bucket, dies_after=3 if killed else None)
    summary = run_copy(source, dest, options=Options(block_size=BLOCK), on_outcome=outcomes.append)
    assert summary.failed == 1
    with pytest.raises(NotFound):
        dest.head("big.bin")  # the proof failed (or never ran): nothing committed
    if not killed:
        assert "CRC32C mismatch" in (outcomes[0].error or "")
    # The re-run finds the corrupted block staged. Its CRC32C, in its id, fails the proof; every block is
    # read again (nothing is read back from Azure), and only then is the blob committed.
    outcomes.clear()
    assert run_copy(GcsSource(bucket), dest, options=Options(block_size=BLOCK), on_outcome=outcomes.append).copied == 1
    assert outcomes[0].notes == [f"{3 if killed else 5} staged block(s) failed the proof; every block was read again"]
    assert dest.container.download_blob("big.bin").readall() == data


class FlippingProxy(ForwardingProxy):
    """fake-gcs-server behind a proxy that flips one byte of the first media download."""

    flipped = False

    def forward(self, method: str, path: str, headers: dict[str, str], body: bytes) -> tuple[int, Any, bytes]:
        status, answer, data = super().forward(method, path, headers, body)
        if "alt=media" in path and data and not self.flipped:
            self.flipped = True
            data = flip(data)
        return status, answer, data


@pytest.mark.parametrize("size", [BLOCK // 2, BLOCK * 3], ids=["one put", "three blocks"])
def test_a_read_corrupted_on_the_wire_is_caught(
    bucket: str, container: str, fake_gcs: FakeGcs, monkeypatch: pytest.MonkeyPatch, size: int
) -> None:
    data = bytes(range(256)) * (size // 256)
    upload(bucket, "wire.bin", data)
    with FlippingProxy(int(fake_gcs.url.rsplit(":", 1)[1])) as proxy:
        monkeypatch.setenv("STORAGE_EMULATOR_HOST", proxy.url)
        summary = run_copy(GcsSource(bucket), AzureBlobDestination(container), options=Options(block_size=BLOCK))
    assert proxy.flipped and summary.failed == 1
    with pytest.raises(NotFound):
        AzureBlobDestination(container).head("wire.bin")


def test_a_changed_source_is_copied_again(bucket: str, container: str) -> None:
    upload(bucket, "v.txt", b"one")
    source, dest = GcsSource(bucket), AzureBlobDestination(container)
    assert run_copy(source, dest).copied == 1
    upload(bucket, "v.txt", b"two!")
    assert run_copy(source, dest).copied == 1
    assert run_verify(source, dest).clean


def test_dry_run_copies_nothing_and_estimates(bucket: str, container: str, capsys: pytest.CaptureFixture[str]) -> None:
    upload(bucket, "a.bin", b"x" * 1000)
    assert main(["copy", f"gs://{bucket}", f"az://{container}", "--dry-run", "--json"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert (result["copied"], result["would_copy"], result["bytes"]) == (0, 1, 1000)
    assert result["estimate_usd"]["total"] > 0
    assert list(AzureBlobDestination(container).list()) == []


def test_plan_and_copy_dry_runs_say_what_cannot_be_carried(
    bucket: str, container: str, capsys: pytest.CaptureFixture[str]
) -> None:
    upload(bucket, "a.bin", b"a" * 10)
    upload(bucket, "uploads/b.jpg", b"b" * 20)
    assert main(["plan", f"gs://{bucket}", f"az://{container}", "--dry-run", "--json"]) == 0
    out = capsys.readouterr().out
    assert json.loads(out.strip().splitlines()[-1]) == {"batches": 2, "objects": 2, "bytes": 30, "cannot_carry": {}}
    assert "nothing was enqueued" in out
    assert list(AzureBlobDestination(container).list()) == [], "a dry run writes no run record"
    assert main(["copy", f"gs://{bucket}", f"az://{container}", "--dry-run", "--json"]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["cannot_carry"] == {}


@pytest.mark.parametrize(
    ("source", "dest", "message"),
    [
        ("s3://bucket", "az://c", "not a gs:// URL"),
        ("gs://bucket", "https://x", "not a az:// URL"),
        ("gs://no-such-bucket-anywhere", "az://{container}", "no GCS bucket"),
        ("gs://{bucket}", "az://no-such-container", "no Azure container"),
    ],
)
def test_usage_errors_exit_2_with_one_sentence(
    bucket: str, container: str, capsys: pytest.CaptureFixture[str], source: str, dest: str, message: str
) -> None:
    code = main(["copy", source.format(bucket=bucket), dest.format(container=container)])
    err = capsys.readouterr().err
    assert code == 2
    assert message in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_an_unreachable_endpoint_exits_2(
    bucket: str, container: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from devstack.emulators import free_port

    monkeypatch.setenv("STORAGE_EMULATOR_HOST", f"http://127.0.0.1:{free_port()}")
    assert main(["verify", f"gs://{bucket}", f"az://{container}"]) == 2
    assert "cannot" in capsys.readouterr().err


def test_bad_azure_credentials_exit_2(bucket: str, container: str, monkeypatch: pytest.MonkeyPatch, azure_env: object,
                                      capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    import os

    wrong = os.environ["AZURE_STORAGE_CONNECTION_STRING"].replace("AccountKey=Eby8", "AccountKey=AAAA")
    monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING", wrong)
    assert main(["copy", f"gs://{bucket}", f"az://{container}"]) == 2
    err = capsys.readouterr().err
    assert "credentials" in err and "Traceback" not in err


def test_transient_errors_are_counted_not_fatal(bucket: str, container: str) -> None:
    class Flaky(GcsSource):
        async def read_range_async(self, http: Any, key: str, generation: str | None, start: int, end: int) -> bytes:
            if key == "bad.txt":
                raise TransientError("injected read failure")
            return await super().read_range_async(http, key, generation, start, end)

    for key in ("bad.txt", "good1.txt", "good2.txt"):
        upload(bucket, key, key.encode())
    summary = run_copy(Flaky(bucket), AzureBlobDestination(container))
    assert (summary.copied, summary.failed) == (2, 1)


def test_rclone_check_agrees_that_the_copy_is_complete(
    bucket: str, container: str, fake_gcs: FakeGcs, azurite: Azurite
) -> None:
    """An independent opinion: rclone's own check of sizes and MD5s finds no difference."""
    files = corpus(bucket)
    assert main(["copy", f"gs://{bucket}", f"az://{container}", "--block-size", str(BLOCK)]) == 0
    result = rclone(["check", f"gcs:{bucket}", f"az:{container}"], fake_gcs, azurite)
    assert result.returncode == 0, result.stderr
    assert "0 differences found" in result.stderr
    assert f"{len(files) - 1} matching files" in result.stderr  # the folder marker is no file to rclone


class CompositeSource:
    """A composite GCS object: no MD5, only a CRC32C (what compose() gives on real GCS)."""

    def __init__(self, data: bytes, *, corrupt: bool = False) -> None:
        import base64

        import google_crc32c

        self.data, self.corrupt = data, corrupt
        self.crc = base64.b64encode(google_crc32c.Checksum(data).digest()).decode()

    def details(self) -> ObjectDetails:
        return ObjectDetails(key="composite.bin", size=len(self.data), md5=None, crc32c=self.crc, generation="9")

    def list(self, prefix: str = "") -> Iterator[ObjectDetails]:
        return iter([self.details()])

    def read_range(self, key: str, generation: str | None, start: int, end: int) -> bytes:
        chunk = self.data[start : end + 1]
        return chunk[:-1] + b"!" if self.corrupt and end == len(self.data) - 1 else chunk


@pytest.mark.parametrize("size", [1000, BLOCK * 3 + 5])
def test_composite_objects_are_checked_by_crc32c(container: str, size: int) -> None:
    data = bytes(range(256)) * (size // 256) + b"x" * (size % 256)
    dest = AzureBlobDestination(container)
    good = CompositeSource(data)
    outcome = copy_object(good, dest, good.details(), None, Options(block_size=BLOCK))
    assert outcome.action == "copied", outcome.error
    blob = dest.head("composite.bin")
    assert blob.metadata[rules.CRC32C_KEY] == good.crc
    assert run_verify(good, dest).clean
    # The CRC32C in the metadata is the copier's own word; --download hashes what Azure holds instead.
    assert run_verify(good, dest, download=True).clean
    client = dest.container.get_blob_client("composite.bin")
    props = client.get_blob_properties()
    client.stage_block("t", b"!" + data[1:])
    client.commit_block_list(["t"], content_settings=props.content_settings, metadata=props.metadata)
    assert run_verify(good, dest).clean, "the stored properties still agree"
    (found,) = run_verify(good, dest, download=True).different
    assert found["problems"][0].startswith("downloaded bytes: crc32c") and not found["properties_only"]
    bad = CompositeSource(data, corrupt=True)
    failed = copy_object(bad, AzureBlobDestination(container), replace(bad.details(), generation="10"), None,
                         Options(block_size=BLOCK))  # fmt: skip
    assert failed.action == "failed" and "CRC32C mismatch" in (failed.error or "")


class CorruptingSource(CompositeSource):
    """An object with the checksums GCS records (``crc32c``, ``md5``, or both), read back with its last byte changed."""

    def __init__(self, data: bytes, sums: str) -> None:
        import hashlib

        super().__init__(data, corrupt=True)
        self.sums, self.md5 = sums, hashlib.md5(data).hexdigest()

    def details(self) -> ObjectDetails:
        return ObjectDetails(
            key="corrupted.bin",
            size=len(self.data),
            md5=self.md5 if "md5" in self.sums else None,
            crc32c=self.crc if "crc32c" in self.sums else None,
            generation="11",
        )


@pytest.mark.parametrize("size", [1000, BLOCK * 3 + 5])
@pytest.mark.parametrize(("sums", "caught_by"), [("md5+crc32c", "CRC32C"), ("md5", "MD5"), ("crc32c", "CRC32C")])
def test_a_corrupted_read_never_becomes_a_blob(container: str, size: int, sums: str, caught_by: str) -> None:
    data = bytes(range(256)) * (size // 256) + b"x" * (size % 256)
    source = CorruptingSource(data, sums)
    dest = AzureBlobDestination(container)
    outcome = copy_object(source, dest, source.details(), None, Options(block_size=BLOCK))
    assert outcome.action == "failed" and f"{caught_by} mismatch" in (outcome.error or "")
    assert [d.key for d in dest.list()] == []


class RefusingPuts(ForwardingProxy):
    """Azurite behind a proxy that answers every PUT 503, or drops its connection unanswered (``drop``)."""

    def __init__(self, upstream_port: int, *, drop: bool) -> None:
        super().__init__(upstream_port, record=True)
        self.drop = drop

    def forward(self, method: str, path: str, headers: dict[str, str], body: bytes) -> tuple[int, Any, bytes]:
        if method != "PUT":
            return super().forward(method, path, headers, body)
        with self._log_lock:
            self.requests.append((method, path))
        if self.drop:
            raise ConnectionAbortedError
        return 503, [("Content-Type", "application/xml")], b"<Error><Code>ServerBusy</Code></Error>"


@pytest.mark.parametrize("drop", [False, True], ids=["503", "dropped"])
def test_a_destination_that_fails_leaves_no_sas_in_any_record_output_or_log(
    bucket: str,
    container: str,
    azurite: Azurite,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
    drop: bool,
) -> None:
    upload(bucket, "a.bin", b"x" * 1000)
    upload(bucket, "b.bin", b"y" * 3 * BLOCK)  # staged blocks: the other PUT
    report = tmp_path / "report.jsonl"
    with RefusingPuts(azurite.blob_port, drop=drop) as proxy:
        monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING", azurite.connection_string_via(proxy.port))
        argv = ["copy", f"gs://{bucket}", f"az://{container}", "--block-size", str(BLOCK), "--report", str(report)]
        assert main([*argv, "--json"]) == 1
    puts = [path for method, path in proxy.requests if method == "PUT"]
    assert puts and all("sig=" in path for path in puts)  # the SAS was in use, in every write's URL
    out = capsys.readouterr()
    records = report.read_text()
    errors = [json.loads(line).get("error") or "" for line in records.splitlines()]
    assert len(errors) == 2 and all("cannot reach Azure Storage" in error for error in errors), errors
    # The small object goes over aiohttp, the staged blocks over urllib3: each names the cause in its words.
    causes = ("RemoteDisconnected", "ServerDisconnected") if drop else ("too many 503 error responses",)
    assert all(any(cause in error for cause in causes) for error in errors), errors
    # Log lines as the functions write them (core.logs' formatter); the CLI's stderr has its own, redacted too.
    lines = [CloudLoggingFormatter().format(record) for record in caplog.records]
    assert any("Retrying" in line for line in lines) == drop  # urllib3 logs the URL of each retried request
    everything = "\n".join([out.out, out.err, records, *lines])
    for secret in ("sig=", "sv=", "se=", "Bearer "):
        assert secret not in everything, f"{secret} leaked"


class BusyAtFirst(ForwardingProxy):
    """Azurite behind a proxy that answers the first ``busy`` PUTs 503, then forwards."""

    def __init__(self, upstream_port: int, busy: int) -> None:
        super().__init__(upstream_port, record=True)
        self.busy = busy

    def forward(self, method: str, path: str, headers: dict[str, str], body: bytes) -> tuple[int, Any, bytes]:
        if method == "PUT":
            with self._log_lock:
                refused, self.busy = self.busy > 0, self.busy - 1
            if refused:
                self.requests.append((method, path))  # forwarded requests are recorded by the proxy itself
                return 503, [("Content-Type", "application/xml")], b"<Error><Code>ServerBusy</Code></Error>"
        return super().forward(method, path, headers, body)


def test_the_event_loop_copy_retries_a_busy_destination_and_proves_each_object(
    bucket: str, container: str, azurite: Azurite, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Small objects go over aiohttp: a 503 is retried with backoff, and odd names arrive as they were."""
    names = ["a.bin", "sp ace/ünï+#?.bin", "pct%2F.bin"]
    for name in names:
        upload(bucket, name, name.encode() * 50)
    with BusyAtFirst(azurite.blob_port, busy=2) as proxy, monkeypatch.context() as patch:
        patch.setenv("AZURE_STORAGE_CONNECTION_STRING", azurite.connection_string_via(proxy.port))
        summary = run_copy(GcsSource(bucket), AzureBlobDestination(container), workers=1)
        puts = [path for method, path in proxy.requests if method == "PUT"]
    assert (summary.copied, summary.failed) == (3, 0)
    assert len(puts) == len(names) + 2, "two refused, then each object once"
    assert run_verify(GcsSource(bucket), AzureBlobDestination(container), download=True).clean


def test_the_event_loop_copy_settles_a_write_that_lost_to_another_writer(bucket: str, container: str) -> None:
    """Its conditional put fails when a blob came after the look: skipped if that blob holds this generation,
    failed (copy again) if it holds something else."""
    from core.clouds import aio
    from migrate.copy import copy_whole_async, existing_blob

    upload(bucket, "same.bin", b"s" * 100)
    upload(bucket, "other.bin", b"o" * 100)
    source, dest = GcsSource(bucket), AzureBlobDestination(container)
    assert run_copy(source, dest).copied == 2
    dest.put(ObjectDetails(key="other.bin", size=5), b"newer")

    async def copy_both() -> list[Any]:
        async with aio.Http() as http:
            return [
                await copy_whole_async(source, dest, http, obj, lambda _: None, Options(), head=existing_blob(dest))
                for obj in source.list()
            ]

    other, same = asyncio.run(copy_both())
    assert (same.action, same.notes) == ("skipped", ["another writer stored this generation or a newer one first"])
    assert other.action == "failed" and "changed while it was copied" in (other.error or "")
    assert b"".join(dest.read_chunks("other.bin")) == b"newer", "the other writer's blob is left as it was"
