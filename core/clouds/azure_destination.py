"""``AzureBlobDestination``: an Azure container as the migration writes it.

Clients, error translation and ``AzureBlobObjectStore`` are ``core.clouds.azure_blob``'s;
whole puts and block stages go straight to the REST API under a container SAS.
"""

from __future__ import annotations

import base64
import hashlib
import math
import threading
import time
import urllib.parse
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import urllib3
from azure.core import MatchConditions
from azure.storage.blob import (
    BlobBlock,
    BlobProperties,
    BlobServiceClient,
    ContainerClient,
    ContainerSasPermissions,
    ContentSettings,
    StandardBlobTier,
    generate_container_sas,
)

from core.clouds.azure_blob import AzureBlobObjectStore, translate_errors
from core.errors import NotFound, TransientError, raise_for_status, transport_failure
from core.ports import DEFAULT_PAGE_SIZE, ObjectDetails, check_key

if TYPE_CHECKING:  # aiohttp is imported by the bulk copy only
    from core.clouds import aio


class AzureBlobDestination:
    """An Azure container written by a migration: whole puts or staged blocks, with every property at once.

    Metadata is written as given (callers make the keys valid Azure names); no
    value encoding is applied, so other tools read it as it is.

    Puts and block stages go straight to the REST API over a urllib3 pool,
    authorised by a short-lived container SAS (from the account key, or a user
    delegation key when the credential is an identity): far less CPU per
    request than the SDK's pipeline, which is what bounds a migration of
    small objects. Listing, commits and everything else use the SDK.
    """

    API_VERSION = "2021-12-02"
    SAS_LIFETIME = timedelta(hours=6)

    def __init__(self, container: str, *, service: BlobServiceClient | None = None) -> None:
        self.container_name = container
        self._store = AzureBlobObjectStore(container, service=service)
        self._pool: urllib3.HTTPConnectionPool | None = None
        self._sas: tuple[str, float] | None = None
        self._sas_lock = threading.Lock()

    def _sas_token(self) -> str:
        cached = self._sas
        if cached is not None and time.monotonic() < cached[1]:
            return cached[0]
        given = self._given_sas()
        if given is not None:
            self._sas = (given, math.inf)  # its own SAS: parsed once, never renewed here
            return given
        with self._sas_lock:
            now = datetime.now(UTC)
            if self._sas is None or time.monotonic() >= self._sas[1]:
                expiry = now + self.SAS_LIFETIME
                credential = self.container.credential
                permission = ContainerSasPermissions(read=True, write=True, create=True, add=True)
                if getattr(credential, "account_key", None):
                    token = generate_container_sas(
                        self.container.account_name, self.container_name, account_key=credential.account_key,
                        permission=permission, expiry=expiry, start=now - timedelta(minutes=5),
                    )  # fmt: skip
                else:
                    service = self._store._service  # built with the container client above
                    assert service is not None
                    key = service.get_user_delegation_key(now - timedelta(minutes=5), expiry)
                    token = generate_container_sas(
                        self.container.account_name, self.container_name, user_delegation_key=key,
                        permission=permission, expiry=expiry, start=now - timedelta(minutes=5),
                    )  # fmt: skip
                # Renewed 30 minutes before it expires (a monotonic deadline: no wall-clock read per request).
                renew_in = (self.SAS_LIFETIME - timedelta(minutes=30)).total_seconds()
                self._sas = (token, time.monotonic() + renew_in)
            return self._sas[0]

    def _given_sas(self) -> str | None:
        """The SAS this client was given (a SAS connection string or ``AzureSasCredential``), if any.

        Such a client has no key to sign with and may not ask for a user delegation
        key, so its own SAS authorises the REST requests too.
        """
        query = urllib.parse.urlsplit(self.container.url).query
        if query:
            return query
        signature = getattr(self.container.credential, "signature", None)
        return str(signature).lstrip("?") if signature else None

    @property
    def container_url(self) -> str:
        """The container's URL without any SAS query."""
        return self.container.url.partition("?")[0]

    def _rest_put(self, key: str, query: str, body: bytes, headers: dict[str, str]) -> None:
        try:
            url, headers = self._url(key, query), self._headers(body, headers)
            response = self._http().request("PUT", url, body=body, headers=headers)
        except urllib3.exceptions.HTTPError as exc:
            raise TransientError(f"cannot reach Azure Storage for {key!r}: {transport_failure(exc)}") from exc
        self._check(response.status, key, response.headers.get("x-ms-error-code", ""))

    def _url(self, key: str, query: str) -> str:
        # check_key: urllib3 resolves a '..' segment, so 'a/../b' would be written over 'b'.
        path = quote(check_key(key), safe="/")
        return f"{self.container_url}/{path}?{query}{'&' if query else ''}{self._sas_token()}"

    def _headers(self, body: bytes, headers: dict[str, str]) -> dict[str, str]:
        return {"x-ms-version": self.API_VERSION, "Content-Length": str(len(body)), **headers}

    def _check(self, status: int, key: str, code: str) -> None:
        raise_for_status(status, "Azure Storage", f"{key!r} in container {self.container_name!r}", code)

    def _http(self) -> urllib3.HTTPConnectionPool:
        """The connection pool of the account's blob endpoint, made on first use."""
        if self._pool is None:
            self._pool = urllib3.connection_from_url(
                self.container_url,
                maxsize=64,
                retries=urllib3.Retry(
                    total=5, backoff_factor=0.2, status_forcelist=(500, 502, 503, 504), allowed_methods=None
                ),
                timeout=urllib3.Timeout(connect=10, read=300),
            )
        return self._pool

    @property
    def container(self) -> ContainerClient:
        return self._store.container

    def check(self, prefix: str = "") -> None:
        """Raise ``NotFound`` if the container does not exist, ``Forbidden`` if it may not be listed.

        A one-blob list, which a container SAS with list permission may do too.
        """
        try:
            with translate_errors(self.container_name):
                # One retry only: this is the pre-flight check a user waits on.
                pages = self.container.list_blobs(
                    name_starts_with=prefix or None, results_per_page=1, retry_total=1, timeout=10
                ).by_page()
                next(pages, None)
        except NotFound:
            raise NotFound(f"no Azure container {self.container_name!r}") from None

    def create(self) -> None:
        self._store.create_container()

    def authorize(self) -> None:
        """Make the SAS that authorises the copy's REST requests now (``Forbidden`` if that is refused).

        With an Entra identity that asks for a user delegation key, which needs
        Storage Blob Delegator (or a data role) on the account.
        """
        with translate_errors(self.container_name):
            self._sas_token()

    def delete(self, key: str) -> None:
        self._store.delete(key)

    def list(self, prefix: str = "", *, page_size: int = DEFAULT_PAGE_SIZE) -> Iterator[ObjectDetails]:
        with translate_errors(prefix):
            for props in self.container.list_blobs(
                name_starts_with=prefix or None, include=["metadata"], results_per_page=page_size
            ):
                yield _details(props)

    def head(self, key: str) -> ObjectDetails:
        with translate_errors(key):
            return _details(self.container.get_blob_client(check_key(key)).get_blob_properties())

    def put(self, details: ObjectDetails, data: bytes, *, tier: str | None = None, if_match: str | None = None,
            if_none_match: bool = False) -> None:  # fmt: skip
        """Write the whole blob with its properties, metadata, Content-MD5 and tier in one request.

        Azure checks the body against Content-MD5 and refuses a corrupted one.
        """
        self._rest_put(details.key, "", data, _put_headers(details, data, tier, if_match, if_none_match))

    async def put_async(self, http: aio.Http, details: ObjectDetails, data: bytes, *, tier: str | None = None,
                        if_match: str | None = None, if_none_match: bool = False) -> None:  # fmt: skip
        """``put`` over the bulk copy's aiohttp session."""
        headers = self._headers(data, _put_headers(details, data, tier, if_match, if_none_match))
        what = f"cannot reach Azure Storage for {details.key!r}"
        reply = await http.request("PUT", self._url(details.key, ""), headers=headers, body=data, what=what)
        self._check(reply.status, details.key, reply.headers.get("x-ms-error-code", ""))

    def put_from_url(self, details: ObjectDetails, url: str, *, tier: str | None = None, if_match: str | None = None,
                     if_none_match: bool = False) -> None:  # fmt: skip
        """Put Blob From URL: Azure fetches the bytes itself (objects up to 5,000 MiB)."""
        headers = {"x-ms-blob-type": "BlockBlob", "x-ms-copy-source": url, **_property_headers(details),
                   **_conditions(if_match, if_none_match)}  # fmt: skip
        if details.md5:
            md5 = base64.b64encode(bytes.fromhex(details.md5)).decode()
            headers.update({"x-ms-source-content-md5": md5, "x-ms-blob-content-md5": md5})
        if tier:
            headers["x-ms-access-tier"] = tier
        self._rest_put(details.key, "", b"", headers)

    def read_chunks(self, key: str) -> Iterator[bytes]:
        """The blob's bytes as stored, a chunk at a time (what ``verify --download`` hashes).

        ``decompress=False``: the SDK would otherwise gunzip a blob stored with Content-Encoding gzip.
        """
        with translate_errors(key):
            blob = self.container.get_blob_client(check_key(key))
            downloader = blob.download_blob(max_concurrency=1, decompress=False)
            yield from downloader.chunks()

    def staged_blocks(self, key: str) -> set[str]:
        """Ids of the blocks staged but not yet committed for ``key`` (what a killed copy left)."""
        try:
            with translate_errors(key):
                _, uncommitted = self.container.get_blob_client(check_key(key)).get_block_list("uncommitted")
        except NotFound:
            return set()
        return {block.id for block in uncommitted}

    def stage_block(self, key: str, block_id: str, data: bytes) -> None:
        """Stage one block; Azure checks it against its Content-MD5.

        ``block_id`` is the plain id, as ``staged_blocks`` returns it and ``commit``
        takes it; on the wire it is base64, as the SDK sends it.
        """
        md5 = base64.b64encode(hashlib.md5(data).digest()).decode()
        wire_id = quote(base64.b64encode(block_id.encode()).decode(), safe="")
        self._rest_put(key, f"comp=block&blockid={wire_id}", data, {"Content-MD5": md5})

    def commit(self, details: ObjectDetails, block_ids: Sequence[str], *, tier: str | None = None,
               if_match: str | None = None, if_none_match: bool = False) -> None:  # fmt: skip
        """Make the staged blocks the blob, atomically, with its properties and metadata."""
        condition: dict[str, Any] = {}
        if if_none_match:
            condition = {"match_condition": MatchConditions.IfMissing}
        elif if_match is not None:
            condition = {"etag": if_match, "match_condition": MatchConditions.IfNotModified}
        with translate_errors(details.key):
            self.container.get_blob_client(check_key(details.key)).commit_block_list(
                [BlobBlock(block_id=b) for b in block_ids],
                content_settings=_settings(details),
                metadata=dict(details.metadata),
                standard_blob_tier=StandardBlobTier(tier) if tier else None,
                **condition,
            )


def _put_headers(
    details: ObjectDetails, data: bytes, tier: str | None, if_match: str | None, if_none_match: bool
) -> dict[str, str]:
    headers = {"x-ms-blob-type": "BlockBlob", **_property_headers(details), **_conditions(if_match, if_none_match)}
    md5 = details.md5 or hashlib.md5(data).hexdigest()
    headers["Content-MD5"] = base64.b64encode(bytes.fromhex(md5)).decode()
    if tier:
        headers["x-ms-access-tier"] = tier
    return headers


def _conditions(if_match: str | None, if_none_match: bool) -> dict[str, str]:
    if if_none_match:
        return {"If-None-Match": "*"}
    return {"If-Match": if_match} if if_match is not None else {}


def _property_headers(details: ObjectDetails) -> dict[str, str]:
    headers = {
        "x-ms-blob-content-type": details.content_type,
        "x-ms-blob-content-encoding": details.content_encoding,
        "x-ms-blob-cache-control": details.cache_control,
        "x-ms-blob-content-disposition": details.content_disposition,
        "x-ms-blob-content-language": details.content_language,
    }
    found = {k: v for k, v in headers.items() if v}
    found.update({f"x-ms-meta-{k}": v for k, v in details.metadata.items()})
    return found


def _settings(details: ObjectDetails) -> ContentSettings:
    return ContentSettings(
        content_type=details.content_type,
        content_encoding=details.content_encoding,
        cache_control=details.cache_control,
        content_disposition=details.content_disposition,
        content_language=details.content_language,
        content_md5=bytearray(bytes.fromhex(details.md5)) if details.md5 else None,
    )


def _details(props: BlobProperties) -> ObjectDetails:
    settings = props.content_settings
    return ObjectDetails(
        key=props.name,
        size=int(props.size or 0),
        md5=bytes(settings.content_md5).hex() if settings and settings.content_md5 else None,
        content_type=settings.content_type if settings else None,
        content_encoding=settings.content_encoding if settings else None,
        cache_control=settings.cache_control if settings else None,
        content_disposition=settings.content_disposition if settings else None,
        content_language=settings.content_language if settings else None,
        metadata=dict(props.metadata or {}),
        storage_class=str(props.blob_tier) if props.blob_tier else None,
        version=str(props.etag) if props.etag else None,
    )
