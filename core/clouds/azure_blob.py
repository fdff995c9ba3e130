"""``AzureBlobObjectStore``: the ObjectStore port on azure-storage-blob.

Conditional writes use ETags (``if_match`` / ``if_none_match='*'``); ``version``
is the blob's ETag. Credentials come the platform way:
``AZURE_STORAGE_CONNECTION_STRING`` (``UseDevelopmentStorage=true`` for Azurite),
or ``AZURE_STORAGE_ACCOUNT_URL`` with ``DefaultAzureCredential``.

Azure metadata values must be ASCII header values. So that any ``str``
round-trips, values are stored percent-encoded where needed: ``%``, control
characters and non-ASCII characters become ``%XX`` UTF-8 escapes, and
everything else is stored as it is (so plain ASCII values stay readable).
"""

from __future__ import annotations

import hashlib
import urllib.parse
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from typing import Any

from azure.core import MatchConditions
from azure.core import exceptions as aexc
from azure.storage.blob import (
    BlobProperties,
    BlobServiceClient,
    ContainerClient,
    ContentSettings,
)

from core import config
from core.clouds import METADATA_VALUE_SAFE, azure_session, identity
from core.errors import Conflict, Forbidden, NotFound, TransientError, raise_for_status
from core.ports import (
    DEFAULT_CHUNK_SIZE,
    DEFAULT_PAGE_SIZE,
    ObjectInfo,
    StoredObject,
    check_key,
    check_size,
)

CONNECTION_STRING_VAR = identity.CONNECTION_STRING_VAR
ACCOUNT_URL_VAR = identity.ACCOUNT_URL_VAR
CONTAINER_VAR = "AZURE_STORAGE_CONTAINER"


def make_service_client() -> BlobServiceClient:
    """A blob service client from the connection string, else the account URL with Entra ID (``identity``)."""
    session = azure_session()
    return identity.azure_storage_client(
        "blob",
        lambda connection_string: BlobServiceClient.from_connection_string(connection_string, session=session),
        lambda url, credential: BlobServiceClient(url, credential, session=session),
    )


@contextmanager
def translate_errors(key: str) -> Iterator[None]:
    """Map azure-core errors to ``core.errors``."""
    try:
        yield
    except aexc.ResourceNotFoundError as exc:
        raise NotFound(f"no object {key!r}: {_reason(exc)}") from exc
    except (aexc.ResourceExistsError, aexc.ResourceModifiedError) as exc:
        raise Conflict(f"conditional write on {key!r} failed: {_reason(exc)}") from exc
    except aexc.ClientAuthenticationError as exc:
        raise Forbidden(f"Azure Storage refused the request for {key!r}: {_reason(exc)}") from exc
    except aexc.ServiceRequestError as exc:
        raise TransientError(f"cannot reach Azure Storage for {key!r}: {exc}") from exc
    except aexc.HttpResponseError as exc:
        raise_for_status(exc.status_code or 400, "Azure Storage", repr(key), _reason(exc))
        raise  # a 2xx carried by an error: not ours to translate


def _reason(exc: aexc.AzureError) -> str:
    code = getattr(exc, "error_code", None)
    return str(code) if code else exc.message.splitlines()[0]


class AzureBlobObjectStore:
    """An ``ObjectStore`` over one Azure Blob container."""

    def __init__(self, container: str | None = None, *, service: BlobServiceClient | None = None) -> None:
        self.container_name = config.require(CONTAINER_VAR, container)
        self._service = service
        self._container: ContainerClient | None = None

    @property
    def container(self) -> ContainerClient:
        if self._container is None:
            if self._service is None:
                self._service = make_service_client()
            self._container = self._service.get_container_client(self.container_name)
        return self._container

    def create_container(self) -> None:
        """Create the container if it does not exist (for local stacks and tests)."""
        with translate_errors(self.container_name), suppress(aexc.ResourceExistsError):
            self.container.create_container()

    def get(self, key: str, *, max_bytes: int | None = None) -> StoredObject:
        with translate_errors(key):
            # The first request reads at most max_single_get_size (32 MiB) and tells the size.
            downloader = self.container.download_blob(check_key(key))
            check_size(key, downloader.size, max_bytes)
            data = downloader.readall()
        return StoredObject(data, _info(downloader.properties))

    def get_stream(self, key: str, *, chunk_size: int = DEFAULT_CHUNK_SIZE) -> Iterator[bytes]:
        with translate_errors(key):
            downloader = self.container.get_blob_client(check_key(key)).download_blob(max_concurrency=1)
        return self._chunks(downloader, key, chunk_size)

    @staticmethod
    def _chunks(downloader: Any, key: str, chunk_size: int) -> Iterator[bytes]:
        # The downloader pins the ETag of its first response for later ranges.
        buffer = b""
        with translate_errors(key):
            for piece in downloader.chunks():
                buffer += piece
                while len(buffer) >= chunk_size:
                    yield buffer[:chunk_size]
                    buffer = buffer[chunk_size:]
        if buffer:
            yield buffer

    def head(self, key: str) -> ObjectInfo:
        with translate_errors(key):
            return _info(self.container.get_blob_client(check_key(key)).get_blob_properties())

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
        check_key(key)
        payload = bytes(data)
        md5 = hashlib.md5(payload)
        conditions: dict[str, Any] = {"overwrite": not if_none_match}
        if if_match is not None:
            conditions.update(etag=if_match, match_condition=MatchConditions.IfNotModified)
        with translate_errors(key):
            response = self.container.get_blob_client(key).upload_blob(
                payload,
                content_settings=ContentSettings(
                    content_type=content_type or "application/octet-stream", content_md5=bytearray(md5.digest())
                ),
                metadata=_encode_metadata(metadata or {}),
                **conditions,
            )
        return ObjectInfo(
            key=key,
            size=len(payload),
            version=str(response["etag"]),
            md5=md5.hexdigest(),
            content_type=content_type or "application/octet-stream",
            metadata=dict(metadata or {}),
            updated=response.get("last_modified"),
        )

    def list(self, prefix: str = "", *, page_size: int = DEFAULT_PAGE_SIZE) -> Iterator[ObjectInfo]:
        with translate_errors(prefix):
            pages = self.container.list_blobs(
                name_starts_with=prefix or None, include=["metadata"], results_per_page=page_size
            )
            for props in pages:
                yield _info(props)

    def delete(self, key: str) -> None:
        with translate_errors(key):
            self.container.delete_blob(check_key(key))


def _encode_metadata(metadata: Mapping[str, str]) -> dict[str, str]:
    return {k: urllib.parse.quote(v, safe=METADATA_VALUE_SAFE) for k, v in metadata.items()}


def _info(props: BlobProperties) -> ObjectInfo:
    settings = props.content_settings
    md5 = bytes(settings.content_md5).hex() if settings and settings.content_md5 else None
    return ObjectInfo(
        key=props.name,
        size=int(props.size or 0),
        version=str(props.etag),
        md5=md5,
        content_type=settings.content_type if settings else None,
        metadata={k: urllib.parse.unquote(v) for k, v in (props.metadata or {}).items()},
        updated=props.last_modified,
    )
