"""The ports: what the core needs from storage and queues.

Each Protocol's docstring is the contract every implementation must keep;
``tests/contracts`` runs the same suite against the in-memory fakes
(``core.memory``), fake-gcs-server and Azurite.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from core.errors import BadRequest, PayloadTooLarge

if TYPE_CHECKING:
    from core.jobs import Job

DEFAULT_CHUNK_SIZE = 4 * 1024 * 1024
DEFAULT_PAGE_SIZE = 1000


@dataclass(frozen=True)
class ObjectInfo:
    """What a store knows about one object, without its bytes."""

    key: str
    size: int
    version: str
    """Opaque token for conditional writes: GCS generation, Azure ETag."""
    md5: str | None = None
    """Lowercase hex MD5 of the bytes, when the store has one."""
    content_type: str | None = None
    metadata: Mapping[str, str] = field(default_factory=dict)
    updated: datetime | None = None


@dataclass(frozen=True)
class StoredObject:
    """An object's bytes with the info that was current when they were read."""

    data: bytes
    info: ObjectInfo


def dot_segment(key: str) -> bool:
    """True when a segment of ``key`` is ``.`` or ``..``; ``\\`` separates segments too, as Azure reads it
    (``uploads\\..\\jobs\\x.json`` is ``jobs/x.json`` there)."""
    return any(segment in (".", "..") for segment in re.split(r"[/\\]", key))


def check_key(key: str) -> str:
    """``key`` if every store can hold it as it is; ``BadRequest`` naming the problem otherwise."""
    if not key or "\x00" in key:
        raise BadRequest(f"invalid object key {key!r}: it must be non-empty and without NUL")
    if dot_segment(key):
        raise BadRequest(f"invalid object key {key!r}: a '.' or '..' path segment would be resolved to another name")
    return key


def check_size(key: str, size: int, max_bytes: int | None) -> None:
    """``PayloadTooLarge`` naming both figures when ``size`` is over ``max_bytes`` (None: no limit)."""
    if max_bytes is not None and size > max_bytes:
        raise PayloadTooLarge(f"{key!r} is {size:,} bytes; the limit is {max_bytes:,}")


@runtime_checkable
class ObjectStore(Protocol):
    """A flat namespace of immutable-per-version objects: a bucket or a container.

    Every implementation must guarantee:

    - Keys are any non-empty Unicode string without NUL, including spaces,
      ``#``, ``?``, ``%`` and ``/``; a key reads back exactly as written. A
      key with a ``.`` or ``..`` path segment (``a/../b``, or ``a\\..\\b``: Azure reads ``\\`` as ``/``) is refused with
      ``BadRequest`` by every method that takes a key: HTTP clients and the
      Azure front end resolve it to another name (``b``), so it could
      overwrite or read another object.
    - ``get`` returns bytes and info from one version: ``info.version`` is the
      version those bytes belong to, so it can guard a later ``put``.
    - ``put`` replaces the whole object atomically. With ``if_match`` it
      succeeds only if the current version equals it, and raises ``Conflict``
      otherwise, also when the object is gone. With ``if_none_match=True`` it
      succeeds only if no object exists, and raises ``Conflict`` otherwise.
      A reader never sees a partial object.
    - ``put`` stores ``content_type`` and ``metadata`` (lowercase ASCII
      identifiers as keys, any ``str`` as values) and they read back unchanged.
    - ``head`` and ``list`` report ``size`` and lowercase hex ``md5`` of what
      ``put`` stored.
    - ``list`` yields every object whose key starts with ``prefix``, in
      ascending key order, fetching pages lazily so memory stays constant.
    - ``get``, ``get_stream``, ``head`` and ``delete`` raise ``NotFound`` for a
      missing key.
    - SDK and network errors surface as ``core.errors`` types: ``NotFound``,
      ``Conflict``, or ``TransientError`` for what may succeed on retry.
    """

    def get(self, key: str, *, max_bytes: int | None = None) -> StoredObject:
        """Read the whole object; ``PayloadTooLarge`` without reading it when it is over ``max_bytes``."""
        ...

    def get_stream(self, key: str, *, chunk_size: int = DEFAULT_CHUNK_SIZE) -> Iterator[bytes]:
        """Read the object in chunks of at most ``chunk_size`` bytes, all from one version."""
        ...

    def head(self, key: str) -> ObjectInfo:
        """Describe the object without reading its bytes."""
        ...

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
        """Write the object, optionally on a precondition; return its new info."""
        ...

    def list(self, prefix: str = "", *, page_size: int = DEFAULT_PAGE_SIZE) -> Iterator[ObjectInfo]:
        """Yield the objects under ``prefix`` in key order, one page at a time."""
        ...

    def delete(self, key: str) -> None:
        """Remove the object."""
        ...


@runtime_checkable
class TaskQueue(Protocol):
    """A queue of work items: Pub/Sub topic, Azure Storage Queue, or an in-memory list.

    Every implementation must guarantee:

    - ``send`` returns only once the message is durably accepted, and returns
      the message id the platform assigned.
    - The payload is a JSON object, delivered to the consumer as the same
      JSON object (consumers must tolerate duplicates: delivery is at least once).
    - A payload the platform cannot carry (Azure: over 64 KiB once encoded)
      raises ``BadRequest`` before anything is sent.
    """

    def send(self, payload: Mapping[str, Any]) -> str:
        """Enqueue one JSON object; return the message id."""
        ...


@runtime_checkable
class ReplicationFeed(Protocol):
    """What delivers a bucket's changes to live replication: a bucket notification on GCP (locally, a subscription
    on the emulator's one notification topic). Open only while a migration is live: when idle it costs nothing.

    - ``open`` makes it, unless it exists; True when this call made it. ``Forbidden`` when this identity may not
      (a bucket notification needs ``storage.buckets.update``).
    - ``close`` removes it, if it exists; True when this call removed it.
    """

    def open(self) -> bool: ...
    def close(self) -> bool: ...
    def is_open(self) -> bool: ...


@runtime_checkable
class JobStore(Protocol):
    """Job records, one per job, updated without lost writes.

    Every implementation must guarantee:

    - ``create`` stores a new record, or, if one with that id exists already,
      stores nothing and returns the existing one (duplicate events are normal).
    - ``update`` applies ``change`` to the current record and writes the result
      conditionally. When another writer got there first it re-reads and
      applies ``change`` again, so no update is ever lost; ``change`` must
      therefore be a pure function of the record. If ``change`` returns the
      record unchanged, nothing is written. After too many lost races it
      raises ``Conflict``.
    - ``get`` and ``update`` raise ``NotFound`` for an unknown id.
    """

    def get(self, job_id: str) -> Job:
        """Return the current record."""
        ...

    def create(self, job: Job) -> Job:
        """Store ``job`` if its id is new; return the record now stored."""
        ...

    def update(self, job_id: str, change: Callable[[Job], Job]) -> Job:
        """Apply ``change`` with optimistic concurrency; return the record now stored."""
        ...


@dataclass(frozen=True)
class ObjectDetails:
    """Everything a migration carries across clouds about one object."""

    key: str
    size: int
    md5: str | None = None
    """Lowercase hex; None for GCS composite objects."""
    crc32c: str | None = None
    """Base64 of the big-endian CRC32C, as GCS reports it."""
    generation: str | None = None
    content_type: str | None = None
    content_encoding: str | None = None
    cache_control: str | None = None
    content_disposition: str | None = None
    content_language: str | None = None
    metadata: Mapping[str, str] = field(default_factory=dict)
    storage_class: str | None = None
    """GCS storage class (STANDARD, NEARLINE, COLDLINE, ARCHIVE) or Azure access tier (Hot, Cool, ...)."""
    caveats: tuple[str, ...] = ()
    """What a copy cannot carry for this object (``CAVEATS``): a hold, a retention time, a custom time, its key."""
    version: str | None = None
    """The destination's version token (Azure ETag) of a listed blob, for a conditional write."""
    created: datetime | None = None
    """When the source object was written (GCS ``timeCreated``)."""


CAVEATS = {
    "temporary-hold": "a temporary hold (Azure: set a legal hold yourself)",
    "event-based-hold": "an event-based hold (Azure: set a legal hold yourself)",
    "retention": "a retention time (Azure: an immutability policy, set by you)",
    "custom-time": "a customTime (kept nowhere on Azure)",
    "customer-supplied-key": "a customer-supplied encryption key: unreadable without the key, so it cannot be copied",
    "customer-managed-key": "a customer-managed KMS key (Azure encrypts with its own key or yours, set by you)",
    "noncurrent-versions": "noncurrent versions (only the live version is copied)",
}
"""Each caveat a copy reports, and what it means on the destination."""


@runtime_checkable
class Source(Protocol):
    """A bucket as a migration reads it (GCS; Azure for a rollback).

    Every implementation must guarantee:

    - ``list`` yields every object under ``prefix`` once, in ascending key
      order, as ``ObjectDetails`` with its size, generation and the checksums
      the store keeps (CRC32C and/or MD5), fetching pages lazily; with
      ``start_offset`` / ``end_offset`` only keys in ``[start_offset, end_offset)``.
    - ``read_range`` returns bytes ``start..end`` (inclusive) of that
      generation exactly as stored (no transcoding), and raises ``NotFound``
      when the object or that generation is gone.
    - ``signed_url`` returns a short-lived URL from which the destination's
      service can fetch that generation itself; it never appears in a log.
    - ``noncurrent_versions`` counts the older versions under ``prefix``,
      which a copy leaves behind (0 where the store keeps none).
    """

    def list(
        self, prefix: str = "", *, start_offset: str | None = None, end_offset: str | None = None
    ) -> Iterator[ObjectDetails]: ...
    def read_range(self, key: str, generation: str | None, start: int, end: int) -> bytes: ...
    def signed_url(self, key: str, generation: str | None) -> str: ...
    def noncurrent_versions(self, prefix: str = "") -> int: ...


@runtime_checkable
class Destination(Protocol):
    """A container as a migration writes it (Azure Blob; GCS for a rollback).

    Every implementation must guarantee:

    - ``put`` writes the whole object with every property of ``details``
      (headers, metadata, tier) at once, refusing bytes that do not match
      ``details.md5`` when it is given; ``put_from_url`` does the same with
      bytes the service fetches itself, checked against ``details.md5``.
    - ``put``, ``put_from_url`` and ``commit`` write only if the blob is still at
      version ``if_match`` (as ``list``/``head`` gave it), or with
      ``if_none_match`` only if there is none; otherwise they raise ``Conflict``
      and change nothing.
    - ``stage_block`` keeps a block under its id (ids of one object have one
      length) without making anything visible; ``staged_blocks`` returns the
      ids staged and not yet committed; ``commit`` makes those blocks, in the
      order given, the object, atomically, with its properties.
    - ``list`` and ``head`` report what ``put`` or ``commit`` stored;
      ``head``, ``read_chunks`` and ``delete`` raise ``NotFound`` for a
      missing key; ``read_chunks`` yields the stored bytes, independent of any
      stored checksum.
    - A key with a ``.`` or ``..`` segment is refused (``check_key``).
    """

    def list(self, prefix: str = "") -> Iterator[ObjectDetails]: ...
    def head(self, key: str) -> ObjectDetails: ...
    def put(self, details: ObjectDetails, data: bytes, *, tier: str | None = None, if_match: str | None = None,
            if_none_match: bool = False) -> None: ...  # fmt: skip
    def put_from_url(self, details: ObjectDetails, url: str, *, tier: str | None = None, if_match: str | None = None,
                     if_none_match: bool = False) -> None: ...  # fmt: skip
    def staged_blocks(self, key: str) -> set[str]: ...
    def stage_block(self, key: str, block_id: str, data: bytes) -> None: ...
    def commit(self, details: ObjectDetails, block_ids: Sequence[str], *, tier: str | None = None,
               if_match: str | None = None, if_none_match: bool = False) -> None: ...  # fmt: skip
    def read_chunks(self, key: str) -> Iterator[bytes]: ...
    def delete(self, key: str) -> None: ...
