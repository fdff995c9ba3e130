"""``python -m migrate check``: the preflight, on fake-gcs-server and Azurite, with destinations that refuse."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from azure.storage.blob import ContainerSasPermissions, generate_container_sas

from core.clouds.azure_blob import AzureBlobObjectStore
from core.clouds.azure_destination import AzureBlobDestination
from core.clouds.gcs import GcsObjectStore
from core.clouds.gcs_source import GcsSource
from devstack.emulators import AZURITE_ACCOUNT, AZURITE_KEY, Azurite
from migrate import check
from migrate.cli import main
from tests.helper import unique_name

pytestmark = pytest.mark.emulator


def sas_connection_string(azurite: Azurite, container: str, **permissions: bool) -> str:
    """A connection string that carries only a container SAS with ``permissions``."""
    token = generate_container_sas(
        AZURITE_ACCOUNT,
        container,
        account_key=AZURITE_KEY,
        permission=ContainerSasPermissions(**permissions),
        expiry=datetime.now(UTC) + timedelta(hours=1),
    )
    return f"BlobEndpoint=http://127.0.0.1:{azurite.blob_port}/{AZURITE_ACCOUNT};SharedAccessSignature={token}"


def last_json(out: str) -> dict[str, object]:
    return dict(json.loads(out.strip().splitlines()[-1]))


def run_check(capsys: pytest.CaptureFixture[str], bucket: str, container: str) -> tuple[int, dict[str, object], str]:
    code = main(["check", f"gs://{bucket}", f"az://{container}", "--json"])
    out = capsys.readouterr().out
    return code, last_json(out), out


def test_all_access_there_exits_0_and_leaves_no_probe(
    bucket: str, container: str, capsys: pytest.CaptureFixture[str]
) -> None:
    GcsObjectStore(bucket).put("uploads/a.jpg", b"\xff\xd8 bytes")
    code, found, out = run_check(capsys, bucket, container)
    assert (code, found) == (0, {"ok": True, "missing": []})
    assert out.startswith("ok: ")
    assert list(AzureBlobObjectStore(container).list()) == [], "the probe blob was deleted"


def test_a_read_only_sas_destination_names_the_write_permission_and_role(
    bucket: str, container: str, azurite: Azurite, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    GcsObjectStore(bucket).put("data/x.txt", b"x")
    monkeypatch.setenv(
        "AZURE_STORAGE_CONNECTION_STRING", sas_connection_string(azurite, container, read=True, list=True)
    )
    code, found, out = run_check(capsys, bucket, container)
    assert code == 1
    assert found["ok"] is False
    missing = found["missing"]
    assert isinstance(missing, list) and len(missing) == 1
    (item,) = missing
    assert item["side"] == "dest"
    assert item["permission"].endswith("/blobs/write")
    assert item["role"] == "Storage Blob Data Contributor"
    assert f"az://{container}: cannot write blobs" in item["message"]
    assert "missing: " in out and "sig=" not in out, "the SAS signature never reaches the output"


@pytest.mark.parametrize(
    ("permissions", "missing"),
    [
        ({"read": True, "list": True, "write": True, "create": True}, "delete"),
        ({"write": True, "create": True, "delete": True}, "read"),
    ],
)
def test_each_refused_destination_permission_is_named_alone(
    bucket: str, container: str, azurite: Azurite, permissions: dict[str, bool], missing: str,
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING", sas_connection_string(azurite, container, **permissions))
    code, found, _ = run_check(capsys, bucket, container)
    assert code == 1
    assert [m["permission"].rsplit("/", 1)[-1] for m in found["missing"]] == [missing]  # type: ignore[union-attr]


def test_a_full_sas_connection_string_is_a_working_destination(
    bucket: str, container: str, azurite: Azurite, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A SAS connection string copies too: its own SAS authorises the REST puts (no user delegation key)."""
    for index in range(3):
        GcsObjectStore(bucket).put(f"data/{index}.txt", f"object {index}".encode())
    conn = sas_connection_string(azurite, container, read=True, list=True, write=True, create=True, delete=True)
    monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING", conn)
    code, found, _ = run_check(capsys, bucket, container)
    assert (code, found["ok"]) == (0, True)
    assert main(["copy", f"gs://{bucket}", f"az://{container}", "--mode", "stream"]) == 0
    assert main(["verify", f"gs://{bucket}", f"az://{container}"]) == 0
    dest = AzureBlobDestination(container)
    assert dest.head("data/2.txt").size == len(b"object 2")


@pytest.mark.parametrize(
    ("source", "dest", "says"),
    [
        ("s3://bucket", "az://c", "is not a gs:// URL"),
        ("gs://{missing}", "az://{container}", "no GCS bucket"),
        ("gs://{bucket}", "az://{missing}", "no Azure container"),
    ],
)
def test_bad_uri_or_missing_side_exits_2(
    bucket: str, container: str, source: str, dest: str, says: str, capsys: pytest.CaptureFixture[str]
) -> None:
    names = {"bucket": bucket, "container": container, "missing": unique_name("none")}
    code = main(["check", source.format(**names), dest.format(**names), "--json"])
    assert code == 2
    assert says in capsys.readouterr().err


def test_an_unreachable_destination_exits_2(
    bucket: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    closed = "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=" + AZURITE_KEY
    monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING", closed + ";BlobEndpoint=http://127.0.0.1:9/devstoreaccount1;")
    assert main(["check", f"gs://{bucket}", "az://anything"]) == 2
    assert "cannot reach" in capsys.readouterr().err


def test_preflight_on_the_adapters_lists_then_reads(bucket: str, container: str) -> None:
    """The source's first object is read (one byte), and an empty bucket is no error."""
    assert check.preflight(GcsSource(bucket), AzureBlobDestination(container)) == []
    GcsObjectStore(bucket).put("k", b"data")
    assert GcsSource(bucket).check() is not None
    assert check.preflight(GcsSource(bucket), AzureBlobDestination(container)) == []
