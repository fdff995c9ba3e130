"""``GcsObjectStore``: the ObjectStore port on google-cloud-storage.

Conditional writes use generation preconditions (``if_generation_match``);
``version`` is the object's generation as a string. ``STORAGE_EMULATOR_HOST``
points the client at fake-gcs-server, with anonymous credentials.
"""

from __future__ import annotations

import base64
import os
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from datetime import timedelta
from typing import Any
from urllib.parse import quote

import google.auth.transport.requests
import requests
import urllib3
from google.api_core import exceptions as gexc
from google.auth.credentials import AnonymousCredentials
from google.cloud import storage
from google.cloud.storage.retry import DEFAULT_RETRY

from core import config
from core.clouds import identity
from core.errors import BadRequest, Conflict, Forbidden, NotFound, TransientError, raise_for_status
from core.ports import (
    DEFAULT_CHUNK_SIZE,
    DEFAULT_PAGE_SIZE,
    ObjectDetails,
    ObjectInfo,
    StoredObject,
    check_key,
    check_size,
)

BUCKET_VAR = "GCS_BUCKET"
SIGNED_URL_LIFETIME = timedelta(minutes=15)
"""Signed URLs live 15 minutes: long enough for one block to be fetched, short if one leaks."""


def make_client(project: str | None = None) -> storage.Client:
    """A storage client: the emulator's, federated credentials, or ADC (``core.clouds.identity`` says which wins)."""
    project = project or os.environ.get("GOOGLE_CLOUD_PROJECT") or None
    if os.environ.get("STORAGE_EMULATOR_HOST"):
        return storage.Client(project=project or "local", credentials=AnonymousCredentials())  # type: ignore[no-untyped-call]
    federated = identity.gcp_credentials()
    if federated is not None:
        # The client would otherwise look up ADC's project; listing a bucket needs none.
        return storage.Client(project=project or "-", credentials=federated)
    return storage.Client(project=project)


@contextmanager
def translate_errors(key: str) -> Iterator[None]:
    """Map google-api-core and transport errors to ``core.errors``."""
    try:
        yield
    except gexc.NotFound as exc:
        raise NotFound(f"no object {key!r}: {exc.message}") from exc
    except (gexc.PreconditionFailed, gexc.Conflict) as exc:
        raise Conflict(f"conditional write on {key!r} failed: {exc.message}") from exc
    except (gexc.TooManyRequests, gexc.ServerError, gexc.RetryError) as exc:
        raise TransientError(f"GCS is unavailable for {key!r}: {exc}") from exc
    except (gexc.Forbidden, gexc.Unauthorized) as exc:
        raise Forbidden(f"GCS refused the request for {key!r}: {exc.message}") from exc
    except gexc.BadRequest as exc:
        raise BadRequest(f"GCS rejected the request for {key!r}: {exc.message}") from exc
    except (requests.ConnectionError, requests.Timeout) as exc:
        raise TransientError(f"cannot reach GCS for {key!r}: {exc}") from exc


class GcsObjectStore:
    """An ``ObjectStore`` over one GCS bucket."""

    def __init__(self, bucket: str | None = None, *, client: storage.Client | None = None) -> None:
        self.bucket_name = config.require(BUCKET_VAR, bucket)
        self._client = client

    @property
    def client(self) -> storage.Client:
        if self._client is None:
            self._client = make_client()
        return self._client

    @property
    def bucket(self) -> storage.Bucket:
        return self.client.bucket(self.bucket_name)

    def create_bucket(self) -> None:
        """Create the bucket if it does not exist (for local stacks and tests)."""
        with translate_errors(self.bucket_name), suppress(gexc.Conflict):
            self.client.create_bucket(self.bucket_name)

    def get(self, key: str, *, max_bytes: int | None = None) -> StoredObject:
        with translate_errors(key):
            blob = self.bucket.get_blob(check_key(key))
            if blob is None:
                raise NotFound(f"no object {key!r}")
            check_size(key, int(blob.size or 0), max_bytes)
            # Pin the generation that the metadata describes.
            data = blob.download_as_bytes(if_generation_match=blob.generation, checksum=None)
        return StoredObject(data, _info(blob))

    def get_stream(self, key: str, *, chunk_size: int = DEFAULT_CHUNK_SIZE) -> Iterator[bytes]:
        with translate_errors(key):
            blob = self.bucket.get_blob(check_key(key))
            if blob is None:
                raise NotFound(f"no object {key!r}")
        return self._chunks(blob, key, chunk_size)

    def _chunks(self, blob: storage.Blob, key: str, chunk_size: int) -> Iterator[bytes]:
        start = 0
        while start < (blob.size or 0):
            end = min(start + chunk_size, blob.size or 0) - 1
            with translate_errors(key):
                chunk = blob.download_as_bytes(
                    start=start, end=end, if_generation_match=blob.generation, checksum=None, raw_download=True
                )
            yield chunk
            start += len(chunk)

    def head(self, key: str) -> ObjectInfo:
        with translate_errors(key):
            blob = self.bucket.get_blob(check_key(key))
        if blob is None:
            raise NotFound(f"no object {key!r}")
        return _info(blob)

    def put(
        self,
        key: str,
        data: bytes,
        *,
        content_type: str | None = None,
        metadata: Mapping[str, str] | None = None,
        if_match: str | None = None,
        if_none_match: bool = False,
    ) -> ObjectInfo:
        blob = self.bucket.blob(check_key(key))
        if metadata:
            blob.metadata = dict(metadata)
        precondition: dict[str, Any] = {}
        if if_none_match:
            precondition["if_generation_match"] = 0
        elif if_match is not None:
            precondition["if_generation_match"] = _generation(key, if_match)
        with translate_errors(key):
            blob.upload_from_string(
                bytes(data),
                content_type=content_type or "application/octet-stream",
                checksum="md5",
                **precondition,
            )
        return _info(blob)

    def list(self, prefix: str = "", *, page_size: int = DEFAULT_PAGE_SIZE) -> Iterator[ObjectInfo]:
        with translate_errors(prefix):
            for blob in self.client.list_blobs(self.bucket_name, prefix=prefix or None, page_size=page_size):
                yield _info(blob)

    def delete(self, key: str) -> None:
        with translate_errors(key):
            self.bucket.blob(check_key(key)).delete()


def _generation(key: str, version: str) -> int:
    if not version.isdigit() or int(version) == 0:
        raise Conflict(f"{key!r}: {version!r} is not a GCS generation")
    return int(version)


def _info(blob: storage.Blob) -> ObjectInfo:
    md5 = base64.b64decode(blob.md5_hash).hex() if blob.md5_hash else None
    return ObjectInfo(
        key=blob.name,
        size=int(blob.size or 0),
        version=str(blob.generation),
        md5=md5,
        content_type=blob.content_type,
        metadata=dict(blob.metadata or {}),
        updated=blob.updated,
    )


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

    def list(self, prefix: str = "", *, page_size: int = DEFAULT_PAGE_SIZE) -> Iterator[ObjectDetails]:
        """Every object under ``prefix`` in key order, a page at a time."""
        with translate_errors(prefix):
            for blob in self.client.list_blobs(self.bucket_name, prefix=prefix or None, page_size=page_size):
                yield details(blob)

    def read_range(self, key: str, generation: str | None, start: int, end: int) -> bytes:
        """Bytes ``start..end`` (inclusive) of that generation, exactly as stored (no gzip transcoding)."""
        bucket, name = quote(self.bucket_name, safe=""), quote(key, safe="")
        url = f"{self.client.api_endpoint}/download/storage/v1/b/{bucket}/o/{name}?alt=media"
        url += f"&generation={generation}" if generation else ""
        # Accept-Encoding: gzip keeps GCS from decompressing gzip-encoded objects on the way out.
        headers = {"Range": f"bytes={start}-{end}", "Accept-Encoding": "gzip", **self._auth()}
        try:
            response = self._http().request("GET", url, headers=headers, decode_content=False, preload_content=True)
        except urllib3.exceptions.HTTPError as exc:
            raise TransientError(f"cannot read {key!r} from GCS: {exc}") from exc
        raise_for_status(response.status, "GCS", f"object {key!r} at generation {generation}")
        return bytes(response.data)

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


def details(blob: storage.Blob) -> ObjectDetails:
    """The migration view of a GCS object."""
    return ObjectDetails(
        key=blob.name,
        size=int(blob.size or 0),
        md5=base64.b64decode(blob.md5_hash).hex() if blob.md5_hash else None,
        crc32c=blob.crc32c,
        generation=str(blob.generation) if blob.generation else None,
        content_type=blob.content_type,
        content_encoding=blob.content_encoding,
        cache_control=blob.cache_control,
        content_disposition=blob.content_disposition,
        content_language=blob.content_language,
        metadata=dict(blob.metadata or {}),
        storage_class=blob.storage_class,
    )
