"""``GcsSource``: a GCS bucket as the migration reads it, object details and ranged raw reads of one generation.

Clients and error translation are ``core.clouds.gcs``'s; reads go straight to
the JSON API's media endpoint, and signed URLs let Azure fetch the bytes itself.
"""

from __future__ import annotations

import base64
import threading
from collections.abc import Iterator, Mapping
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import google.auth.transport.requests
import urllib3
from google.auth.credentials import AnonymousCredentials
from google.cloud import storage
from google.cloud.storage.retry import DEFAULT_RETRY

from core.clouds import identity
from core.clouds.gcs import make_client, translate_errors
from core.errors import Forbidden, NotFound, TransientError, raise_for_status, transport_failure
from core.ports import DEFAULT_PAGE_SIZE, ObjectDetails

if TYPE_CHECKING:  # aiohttp is imported by the bulk copy only
    from core.clouds import aio

SIGNED_URL_LIFETIME = timedelta(minutes=15)
"""Signed URLs live 15 minutes: long enough for one block to be fetched, short if one leaks."""


class GcsSource:
    """A GCS bucket read for migration: full object details and ranged raw reads of one generation.

    Reads go straight to the JSON API's media endpoint over a urllib3 pool, with
    the client's own credentials: a third of the CPU of ``Blob.download_as_bytes``
    per request, which is what bounds a migration of small objects.
    """

    def __init__(self, bucket: str, *, client: storage.Client | None = None) -> None:
        self.bucket_name = bucket
        self._client = client
        self._pool: urllib3.HTTPConnectionPool | None = None
        self._token_lock = threading.Lock()

    @property
    def client(self) -> storage.Client:
        if self._client is None:
            self._client = make_client()
        return self._client

    def check(self, prefix: str = "") -> ObjectDetails | None:
        """The first object under ``prefix`` (None if there is none), by a one-object list.

        ``NotFound`` if the bucket does not exist, ``Forbidden`` if this identity may
        not list it, ``TransientError`` if GCS cannot be reached. A list, not
        ``bucket.exists()``: that needs ``storage.buckets.get``, which neither
        ``roles/storage.objectUser`` nor ``roles/storage.objectViewer`` grants.
        """
        try:
            with translate_errors(self.bucket_name):
                # A short deadline: this is the pre-flight check a user waits on.
                blobs = self.client.list_blobs(
                    self.bucket_name, prefix=prefix or None, max_results=1,
                    retry=DEFAULT_RETRY.with_deadline(10), timeout=10,
                )  # fmt: skip
                first = next(iter(blobs), None)
        except NotFound:
            raise NotFound(f"no GCS bucket {self.bucket_name!r}") from None
        except Forbidden as exc:
            raise Forbidden(
                f"GCS refused to list gs://{self.bucket_name} (storage.objects.list): grant roles/storage.objectViewer"
                f" on the bucket to this identity ({identity.describe()['gcs']})"
            ) from exc
        return details(first) if first is not None else None

    def list(
        self,
        prefix: str = "",
        *,
        start_offset: str | None = None,
        end_offset: str | None = None,
        page_size: int = DEFAULT_PAGE_SIZE,
    ) -> Iterator[ObjectDetails]:
        """Every object under ``prefix`` (within ``[start_offset, end_offset)``) in key order, a page at a time."""
        with translate_errors(prefix):
            blobs = self.client.list_blobs(
                self.bucket_name,
                prefix=prefix or None,
                start_offset=start_offset,
                end_offset=end_offset,
                page_size=page_size,
            )
            for blob in blobs:
                yield details(blob)

    def noncurrent_versions(self, prefix: str = "") -> int:
        """Older versions under ``prefix`` (a versioned listing, less the live objects): a copy leaves them."""
        with translate_errors(prefix):
            every = sum(1 for _ in self.client.list_blobs(self.bucket_name, prefix=prefix or None, versions=True))
            live = sum(1 for _ in self.client.list_blobs(self.bucket_name, prefix=prefix or None))
        return max(every - live, 0)

    def read_range(self, key: str, generation: str | None, start: int, end: int) -> bytes:
        """Bytes ``start..end`` (inclusive) of that generation, exactly as stored (no gzip transcoding).

        Read without naming the generation, then checked against the one the response carries
        (``x-goog-generation``): a read pinned to a generation costs the server a lookup of that
        version (twice the CPU per object on fake-gcs-server). Only when the object was replaced or
        deleted since it was listed (or the header is missing) is that generation read by name.
        """
        response = self._get(key, None, start, end)
        if _is_generation(response.status, response.headers, generation):
            return bytes(response.data)
        response = self._get(key, generation, start, end)
        raise_for_status(response.status, "GCS", f"object {key!r} at generation {generation}")
        return bytes(response.data)

    async def read_range_async(self, http: aio.Http, key: str, generation: str | None, start: int, end: int) -> bytes:
        """``read_range`` over the bulk copy's aiohttp session."""
        what = f"cannot read {key!r} from GCS"
        reply = await http.request("GET", self._url(key, None), headers=self._headers(start, end), what=what)
        if _is_generation(reply.status, reply.headers, generation):
            return reply.data
        reply = await http.request("GET", self._url(key, generation), headers=self._headers(start, end), what=what)
        raise_for_status(reply.status, "GCS", f"object {key!r} at generation {generation}")
        return reply.data

    def _get(self, key: str, generation: str | None, start: int, end: int) -> urllib3.BaseHTTPResponse:
        try:
            return self._http().request(
                "GET", self._url(key, generation), headers=self._headers(start, end), decode_content=False
            )
        except urllib3.exceptions.HTTPError as exc:
            raise TransientError(f"cannot read {key!r} from GCS: {transport_failure(exc)}") from exc

    def _url(self, key: str, generation: str | None) -> str:
        bucket, name = quote(self.bucket_name, safe=""), quote(key, safe="")
        url = f"{self.client.api_endpoint}/download/storage/v1/b/{bucket}/o/{name}?alt=media"
        return url + (f"&generation={generation}" if generation else "")

    def _headers(self, start: int, end: int) -> dict[str, str]:
        # Accept-Encoding: gzip keeps GCS from decompressing gzip-encoded objects on the way out.
        return {"Range": f"bytes={start}-{end}", "Accept-Encoding": "gzip", **self._auth()}

    def _http(self) -> urllib3.HTTPConnectionPool:
        """The connection pool of the GCS endpoint, made on first use."""
        if self._pool is None:
            self._pool = urllib3.connection_from_url(
                self.client.api_endpoint,
                maxsize=64,
                retries=urllib3.Retry(total=5, backoff_factor=0.2, status_forcelist=(429, 500, 502, 503, 504)),
                timeout=urllib3.Timeout(connect=10, read=120),
            )
        return self._pool

    def can_sign(self) -> bool:
        """True when these credentials can make V4 signed URLs (a key, or IAM signBlob)."""
        credentials = self.client._credentials
        if isinstance(credentials, AnonymousCredentials):
            return False
        return hasattr(credentials, "sign_bytes") or bool(getattr(credentials, "service_account_email", None))

    def signed_url(self, key: str, generation: str | None, lifetime: timedelta = SIGNED_URL_LIFETIME) -> str:
        """A short-lived V4 signed URL for that generation: from the key, or through IAM signBlob."""
        credentials = self.client._credentials
        blob = self.client.bucket(self.bucket_name).blob(key)
        extra: dict[str, Any] = {}
        if not getattr(credentials, "signer_email", None):  # no private key here: sign through IAM
            with self._token_lock:
                if not credentials.valid:
                    credentials.refresh(google.auth.transport.requests.Request())
            extra = {"service_account_email": credentials.service_account_email, "access_token": credentials.token}
        with translate_errors(key):
            return str(
                blob.generate_signed_url(
                    version="v4",
                    expiration=lifetime,
                    method="GET",
                    generation=int(generation) if generation else None,
                    scheme="https",
                    **extra,
                )
            )

    def _auth(self) -> dict[str, str]:
        credentials = self.client._credentials
        if isinstance(credentials, AnonymousCredentials):
            return {}
        with self._token_lock:
            if not credentials.valid:
                credentials.refresh(google.auth.transport.requests.Request())
            return {"Authorization": f"Bearer {credentials.token}"}


def _is_generation(status: int, headers: Mapping[str, str], generation: str | None) -> bool:
    """A read answered with the bytes of ``generation`` (any, when None)."""
    return status in (200, 206) and (generation is None or headers.get("x-goog-generation") == generation)


def details_from_resource(resource: dict[str, Any]) -> ObjectDetails | None:
    """The migration view of an object from its JSON API resource (a notification's payload); None if incomplete."""
    name, bucket = resource.get("name"), resource.get("bucket")
    if (
        not isinstance(name, str)
        or not isinstance(bucket, str)
        or "generation" not in resource
        or "size" not in resource
    ):
        return None
    return _details(resource)


def details(blob: storage.Blob) -> ObjectDetails:
    """The migration view of a GCS object."""
    return _details(blob._properties)


def _details(resource: dict[str, Any]) -> ObjectDetails:
    """From the object's JSON API resource itself: the SDK's ``Blob`` properties parse every timestamp with
    ``strptime``, which cost a listing of small objects a tenth of the copier's CPU."""
    md5, generation, created = resource.get("md5Hash"), resource.get("generation"), resource.get("timeCreated")
    return ObjectDetails(
        key=resource["name"],
        size=int(resource.get("size") or 0),
        md5=base64.b64decode(md5).hex() if md5 else None,
        crc32c=resource.get("crc32c"),
        generation=str(generation) if generation else None,
        content_type=resource.get("contentType"),
        content_encoding=resource.get("contentEncoding"),
        cache_control=resource.get("cacheControl"),
        content_disposition=resource.get("contentDisposition"),
        content_language=resource.get("contentLanguage"),
        metadata=dict(resource.get("metadata") or {}),
        storage_class=resource.get("storageClass"),
        caveats=caveats(resource),
        created=datetime.fromisoformat(created) if created else None,
    )


def caveats(resource: dict[str, Any]) -> tuple[str, ...]:
    """What a copy cannot carry for this object (``core.ports.CAVEATS``), from its JSON API resource."""
    found = []
    if resource.get("temporaryHold"):
        found.append("temporary-hold")
    if resource.get("eventBasedHold"):
        found.append("event-based-hold")
    if resource.get("retentionExpirationTime"):
        found.append("retention")
    if resource.get("customTime"):
        found.append("custom-time")
    if resource.get("customerEncryption"):
        found.append("customer-supplied-key")
    if resource.get("kmsKeyName"):
        found.append("customer-managed-key")
    return tuple(found)
