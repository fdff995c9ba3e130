"""``GcsObjectStore``: the ObjectStore port on google-cloud-storage.

Conditional writes use generation preconditions (``if_generation_match``);
``version`` is the object's generation as a string. ``STORAGE_EMULATOR_HOST``
points the client at fake-gcs-server, with anonymous credentials.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from typing import Any

import requests
from google.api_core import exceptions as gexc
from google.auth.credentials import AnonymousCredentials
from google.cloud import storage

from core import config
from core.clouds import identity, pool_connections
from core.errors import BadRequest, Conflict, Forbidden, NotFound, TransientError
from core.ports import (
    DEFAULT_CHUNK_SIZE,
    DEFAULT_PAGE_SIZE,
    ObjectInfo,
    StoredObject,
    check_key,
    check_size,
)

BUCKET_VAR = "GCS_BUCKET"


def make_client(project: str | None = None) -> storage.Client:
    """A storage client: the emulator's, federated credentials, or ADC (``core.clouds.identity`` says which wins)."""
    project = project or os.environ.get("GOOGLE_CLOUD_PROJECT") or None
    if os.environ.get("STORAGE_EMULATOR_HOST"):
        client = storage.Client(project=project or "local", credentials=AnonymousCredentials())  # type: ignore[no-untyped-call]
    elif (federated := identity.gcp_credentials()) is not None:
        # The client would otherwise look up ADC's project; listing a bucket needs none.
        client = storage.Client(project=project or "-", credentials=federated)
    else:
        client = storage.Client(project=project)
    pool_connections(client._http)  # its authorized session, made here rather than on the first request
    return client


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
