"""Server-side copies: GCS V4 signing offline, and the Put Block From URL path against Azurite.

Azurite cannot fetch a URL outside itself, and does not implement Put Blob From URL:
so the signed URL is checked offline (its signature verified with the key's public half),
and the block path is exercised with an Azurite SAS URL as the source.
"""

from __future__ import annotations

import json
import urllib.parse
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from hashlib import sha256

import pytest
from azure.storage.blob import BlobSasPermissions, generate_blob_sas
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from google.cloud import storage
from google.oauth2 import service_account

from core.clouds.azure_destination import AzureBlobDestination
from core.clouds.gcs import GcsObjectStore
from core.clouds.gcs_source import GcsSource
from core.ports import ObjectDetails
from devstack.emulators import AZURITE_ACCOUNT, AZURITE_KEY, Azurite
from migrate.copy import Options, copy_object
from tests.helper import unique_name

pytestmark = pytest.mark.emulator


@pytest.fixture(scope="module")
def key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def signing_source(private_key: rsa.RSAPrivateKey) -> GcsSource:
    pem = private_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    info = {
        "type": "service_account",
        "project_id": "proj",
        "private_key_id": "local-test-key",
        "private_key": pem,
        "client_email": "migrator@proj.iam.gserviceaccount.com",
        "client_id": "1",
        "token_uri": "https://oauth2.googleapis.com/token",
    }
    credentials = service_account.Credentials.from_service_account_info(info)
    return GcsSource("bkt", client=storage.Client(project="proj", credentials=credentials))


def test_a_service_account_key_signs_a_v4_url_offline(key: rsa.RSAPrivateKey, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("STORAGE_EMULATOR_HOST", raising=False)
    source = signing_source(key)
    assert source.can_sign()
    url = source.signed_url("dir/a b#1.jpg", "1700000000000001")
    parts = urllib.parse.urlsplit(url)
    query = dict(urllib.parse.parse_qsl(parts.query))
    assert (parts.scheme, parts.netloc, parts.path) == ("https", "storage.googleapis.com", "/bkt/dir/a%20b%231.jpg")
    assert query["X-Goog-Algorithm"] == "GOOG4-RSA-SHA256"
    assert query["X-Goog-Credential"].startswith("migrator@proj.iam.gserviceaccount.com/")
    assert int(query["X-Goog-Expires"]) <= 15 * 60
    assert query["generation"] == "1700000000000001"
    # Rebuild the V4 string-to-sign and check the signature with the public key.
    signature = bytes.fromhex(query.pop("X-Goog-Signature"))
    canonical_query = "&".join(
        f"{urllib.parse.quote(k, safe='')}={urllib.parse.quote(v, safe='')}" for k, v in sorted(query.items())
    )
    canonical_request = "\n".join(
        ["GET", parts.path, canonical_query, "host:storage.googleapis.com\n", "host", "UNSIGNED-PAYLOAD"]
    )
    scope = query["X-Goog-Credential"].split("/", 1)[1]
    to_sign = "\n".join(
        ["GOOG4-RSA-SHA256", query["X-Goog-Date"], scope, sha256(canonical_request.encode()).hexdigest()]
    )
    key.public_key().verify(signature, to_sign.encode(), padding.PKCS1v15(), hashes.SHA256())


def test_anonymous_credentials_cannot_sign(gcs_env: object) -> None:
    assert not GcsSource("anything").can_sign()


class AzuriteUrlSource:
    """A source whose 'signed URL' is an Azurite SAS URL (Azurite fetches only from itself)."""

    def __init__(self, azurite: Azurite, container: str) -> None:
        self.azurite, self.container = azurite, container
        self.reads = 0

    def signed_url(self, key: str, generation: str | None) -> str:
        sas = generate_blob_sas(
            AZURITE_ACCOUNT, self.container, key, account_key=AZURITE_KEY,
            permission=BlobSasPermissions(read=True), expiry=datetime.now(UTC) + timedelta(hours=1),
        )  # fmt: skip
        name = urllib.parse.quote(key)
        return f"http://127.0.0.1:{self.azurite.blob_port}/{AZURITE_ACCOUNT}/{self.container}/{name}?{sas}"

    def read_range(self, key: str, generation: str | None, start: int, end: int) -> bytes:
        self.reads += 1
        raise AssertionError("a server-side copy must not read bytes through this process")

    def list(self, prefix: str = "") -> Iterator[ObjectDetails]:  # pragma: no cover - not used here
        return iter(())


@pytest.mark.parametrize(
    ("md5", "single_put_limit", "why"),
    [
        (True, 0, "over one Put Blob From URL, and a range has no checksum"),
        (False, 5000 * 1024 * 1024, "no MD5 for Azure to check"),
    ],
)
def test_what_azure_cannot_prove_is_streamed_and_proven_here(
    gcs_env: object, azure_env: Azurite, md5: bool, single_put_limit: int, why: str
) -> None:
    """Put Block From URL ranges and objects without an MD5 have nothing Azure can check: they are streamed."""
    bucket = unique_name("src")
    GcsObjectStore(bucket).create_bucket()
    data = bytes(range(256)) * 4096  # 1 MiB: four 256 KiB blocks
    storage.Client(project="local").bucket(bucket).blob("big file #1.bin").upload_from_string(data)
    listed = next(GcsSource(bucket).list())
    obj = listed if md5 else replace(listed, md5=None)  # as a composite object has none
    dest = AzureBlobDestination(unique_name("dst"))
    dest.create()
    options = Options(server_side=True, single_put_limit=single_put_limit, block_size=256 * 1024)
    outcome = copy_object(GcsSource(bucket), dest, obj, None, options)
    assert outcome.action == "copied", outcome.error
    assert outcome.notes == [f"streamed, proven by CRC32C here: {why}"]
    assert dest.container.download_blob(obj.key).readall() == data


def test_signed_urls_never_reach_the_report_or_the_log(
    azure_env: Azurite, caplog: pytest.LogCaptureFixture, tmp_path: object
) -> None:
    """A copy that fails after signing reports the object, not the URL that could read it."""
    secret = "X-Goog-Signature=feedfacecafebeef"

    class LeakySource(AzuriteUrlSource):
        def signed_url(self, key: str, generation: str | None) -> str:
            return f"http://127.0.0.1:1/nowhere/{key}?{secret}"  # Azure cannot fetch it: the copy fails

    dest = AzureBlobDestination(unique_name("dst"))
    dest.create()
    obj = ObjectDetails(key="x.bin", size=10, md5="0" * 32, generation="1")
    with caplog.at_level("DEBUG"):
        outcome = copy_object(LeakySource(azure_env, "none"), dest, obj, None, Options(server_side=True))
    assert outcome.action == "failed"
    assert "feedfacecafebeef" not in json.dumps(outcome.to_dict())
    assert "feedfacecafebeef" not in caplog.text
