"""In-memory fakes of the ports: working implementations for tests and demos.

They keep the same contracts as the cloud adapters (the contract suites in
``tests/contracts`` run against both), and they are thread-safe so that
concurrency tests mean something.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import threading
import urllib.parse
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from core import crc32c
from core.errors import BadRequest, Conflict, Forbidden, NotFound
from core.ports import (
    DEFAULT_CHUNK_SIZE,
    DEFAULT_PAGE_SIZE,
    ObjectDetails,
    ObjectInfo,
    StoredObject,
    check_key,
    check_size,
)

log = logging.getLogger(__name__)


class InMemoryObjectStore:
    """An ``ObjectStore`` held in a dict; versions count up from 1."""

    def __init__(self) -> None:
        self._objects: dict[str, StoredObject] = {}
        self._lock = threading.Lock()
        self._versions = itertools.count(1)

    def get(self, key: str, *, max_bytes: int | None = None) -> StoredObject:
        with self._lock:
            found = self._find(key)
        check_size(key, found.info.size, max_bytes)
        return found

    def get_stream(self, key: str, *, chunk_size: int = DEFAULT_CHUNK_SIZE) -> Iterator[bytes]:
        data = self.get(key).data  # one version, fetched before the first chunk
        return (data[i : i + chunk_size] for i in range(0, len(data), chunk_size))

    def head(self, key: str) -> ObjectInfo:
        with self._lock:
            return self._find(key).info

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
        with self._lock:
            current = self._objects.get(key)
            _check_preconditions(key, current, if_match, if_none_match)
            info = ObjectInfo(
                key=key,
                size=len(payload),
                version=str(next(self._versions)),
                md5=hashlib.md5(payload).hexdigest(),
                content_type=content_type,
                metadata=dict(metadata or {}),
                updated=datetime.now(UTC),
            )
            self._objects[key] = StoredObject(payload, info)
            return info

    def list(self, prefix: str = "", *, page_size: int = DEFAULT_PAGE_SIZE) -> Iterator[ObjectInfo]:
        with self._lock:
            keys = sorted(k for k in self._objects if k.startswith(prefix))
        for key in keys:
            with self._lock:
                found = self._objects.get(key)
            if found is not None:  # deleted since the listing started
                yield found.info

    def delete(self, key: str) -> None:
        with self._lock:
            self._find(key)
            del self._objects[key]

    def _find(self, key: str) -> StoredObject:
        check_key(key)
        try:
            return self._objects[key]
        except KeyError:
            raise NotFound(f"no object {key!r}") from None


def _check_preconditions(key: str, current: StoredObject | None, if_match: str | None, if_none_match: bool) -> None:
    if if_none_match and current is not None:
        raise Conflict(f"{key!r} exists already")
    if if_match is not None and (current is None or current.info.version != if_match):
        found = "missing" if current is None else f"at version {current.info.version}"
        raise Conflict(f"{key!r} is {found}, not at version {if_match}")


class InMemoryTaskQueue:
    """A ``TaskQueue`` that keeps the sent payloads, in order, for inspection."""

    MAX_MESSAGE_BYTES = 64 * 1024
    """The strictest platform limit: Azure's 64 KiB, counted after base64 encoding."""

    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._ids = itertools.count(1)

    def send(self, payload: Mapping[str, Any]) -> str:
        encoded = json.dumps(dict(payload))
        size = (len(encoded.encode()) + 2) // 3 * 4
        if size > self.MAX_MESSAGE_BYTES:
            raise BadRequest(f"message of {size} bytes (base64) is over {self.MAX_MESSAGE_BYTES}")
        with self._lock:
            self.messages.append(json.loads(encoded))
            return str(next(self._ids))

    def drain(self) -> list[dict[str, Any]]:
        """Remove and return every message sent so far."""
        with self._lock:
            taken, self.messages = self.messages, []
            return taken


class InMemoryFeed:
    """A ``ReplicationFeed`` that only remembers whether it is open; ``refuse`` makes ``open`` raise ``Forbidden``."""

    def __init__(self, *, refuse: bool = False) -> None:
        self.opened, self.refuse = False, refuse

    def open(self) -> bool:
        if self.refuse:
            raise Forbidden("making a bucket notification needs storage.buckets.update")
        made, self.opened = not self.opened, True
        return made

    def close(self) -> bool:
        removed, self.opened = self.opened, False
        return removed

    def is_open(self) -> bool:
        return self.opened


class CallbackTaskQueue:
    """A ``TaskQueue`` that hands each payload to ``deliver`` at once, in the sender's thread.

    For running without a message broker (a local stack without the Pub/Sub
    emulator): processing happens in-process, and a failure is logged, not retried.
    """

    def __init__(self, deliver: Callable[[dict[str, Any]], object]) -> None:
        self.deliver = deliver
        self._ids = itertools.count(1)

    def send(self, payload: Mapping[str, Any]) -> str:
        message = json.loads(json.dumps(dict(payload)))
        try:
            self.deliver(message)
        except Exception:
            log.exception("in-process delivery of %s failed; it is not retried", message)
        return f"inline-{next(self._ids)}"


# The migration's ports ---------------------------------------------------------------------------

_SOURCES: dict[str, InMemorySource] = {}
"""Sources by name, so that an in-memory destination can fetch a ``memory://`` signed URL itself."""


class InMemorySource:
    """A ``Source``: a bucket of objects with generations, MD5 and CRC32C, as GCS lists them.

    ``signed_url`` gives ``memory://NAME/KEY?generation=G``, which ``InMemoryDestination.put_from_url``
    fetches as Azure fetches a GCS signed URL.
    """

    def __init__(self, name: str = "memory") -> None:
        self.name = name
        self._objects: dict[str, tuple[ObjectDetails, bytes]] = {}
        self._generations = itertools.count(1_700_000_000_000_000)
        self._older: dict[str, int] = {}
        """Key -> how many older versions it has (kept as counts only)."""
        self._lock = threading.Lock()
        _SOURCES[name] = self

    def add(self, key: str, data: bytes, **properties: Any) -> ObjectDetails:
        """Store ``data`` under ``key`` as a new generation; ``properties`` are ``ObjectDetails`` fields."""
        check_key(key)
        details = ObjectDetails(
            key=key,
            size=len(data),
            md5=hashlib.md5(data).hexdigest(),
            crc32c=crc32c.to_gcs(crc32c.value(data)),
            generation=str(next(self._generations)),
            **{"storage_class": "STANDARD", "created": datetime.now(UTC), **properties},
        )
        with self._lock:
            if key in self._objects:
                self._older[key] = self._older.get(key, 0) + 1
            self._objects[key] = (details, bytes(data))
        return details

    def delete(self, key: str) -> None:
        """Remove the live version (a delete the migration may replicate)."""
        with self._lock:
            if self._objects.pop(key, None) is None:
                raise NotFound(f"no object {key!r}")

    def noncurrent_versions(self, prefix: str = "") -> int:
        with self._lock:
            return sum(count for key, count in self._older.items() if key.startswith(prefix))

    def list(
        self, prefix: str = "", *, start_offset: str | None = None, end_offset: str | None = None
    ) -> Iterator[ObjectDetails]:
        with self._lock:
            keys = sorted(
                k
                for k in self._objects
                if k.startswith(prefix)
                and (start_offset is None or k >= start_offset)
                and (end_offset is None or k < end_offset)
            )
        for key in keys:
            with self._lock:
                found = self._objects.get(key)
            if found is not None:
                yield found[0]

    def read_range(self, key: str, generation: str | None, start: int, end: int) -> bytes:
        with self._lock:
            found = self._objects.get(key)
        if found is None or (generation is not None and found[0].generation != generation):
            raise NotFound(f"no object {key!r} at generation {generation}")
        return found[1][start : end + 1]

    def signed_url(self, key: str, generation: str | None) -> str:
        return f"memory://{self.name}/{urllib.parse.quote(key, safe='')}?generation={generation or ''}"


class InMemoryDestination:
    """A ``Destination``: a container with staged blocks, as Azure Blob keeps them."""

    def __init__(self) -> None:
        self._blobs: dict[str, tuple[ObjectDetails, bytes]] = {}
        self._staged: dict[str, dict[str, bytes]] = {}
        self._versions = itertools.count(1)
        self._lock = threading.Lock()

    def list(self, prefix: str = "") -> Iterator[ObjectDetails]:
        with self._lock:
            found = [self._blobs[k][0] for k in sorted(self._blobs) if k.startswith(prefix)]
        yield from found

    def head(self, key: str) -> ObjectDetails:
        return self._find(key)[0]

    def put(self, details: ObjectDetails, data: bytes, *, tier: str | None = None, if_match: str | None = None,
            if_none_match: bool = False) -> None:  # fmt: skip
        check_key(details.key)
        if details.md5 and hashlib.md5(data).hexdigest() != details.md5:
            raise BadRequest(f"Content-MD5 mismatch for {details.key!r}: the body differs from its MD5")
        self._store(details, bytes(data), tier, if_match, if_none_match)

    def put_from_url(self, details: ObjectDetails, url: str, *, tier: str | None = None, if_match: str | None = None,
                     if_none_match: bool = False) -> None:  # fmt: skip
        parsed = urllib.parse.urlsplit(url)
        source = _SOURCES.get(parsed.netloc)
        if parsed.scheme != "memory" or source is None:
            raise BadRequest(f"cannot fetch {parsed.scheme}://{parsed.netloc}/...")
        key = urllib.parse.unquote(parsed.path.lstrip("/"))
        generation = urllib.parse.parse_qs(parsed.query).get("generation", [""])[0] or None
        found = next((o for o in source.list(key) if o.key == key), None)
        data = source.read_range(key, generation, 0, found.size - 1) if found and found.size else b""
        self.put(details, data, tier=tier, if_match=if_match, if_none_match=if_none_match)

    def staged_blocks(self, key: str) -> set[str]:
        with self._lock:
            return set(self._staged.get(check_key(key), {}))

    def stage_block(self, key: str, block_id: str, data: bytes) -> None:
        with self._lock:
            blocks = self._staged.setdefault(check_key(key), {})
            if blocks and len(next(iter(blocks))) != len(block_id):
                raise BadRequest(f"block ids of {key!r} must have one length")
            blocks[block_id] = bytes(data)

    def commit(self, details: ObjectDetails, block_ids: Sequence[str], *, tier: str | None = None,
               if_match: str | None = None, if_none_match: bool = False) -> None:  # fmt: skip
        with self._lock:
            blocks = self._staged.get(check_key(details.key), {})
            missing = [b for b in block_ids if b not in blocks]
            if missing:
                raise BadRequest(f"block {missing[0]!r} of {details.key!r} was never staged")
            data = b"".join(blocks[b] for b in block_ids)
        # As Azure: the committed blob carries the Content-MD5 it is given, unchecked against the blocks.
        self._store(details, data, tier, if_match, if_none_match)
        with self._lock:
            self._staged.pop(details.key, None)  # as on Azure: a commit discards the uncommitted blocks

    def read_chunks(self, key: str) -> Iterator[bytes]:
        data = self._find(key)[1]
        yield from (data[i : i + DEFAULT_CHUNK_SIZE] for i in range(0, len(data), DEFAULT_CHUNK_SIZE))

    def delete(self, key: str) -> None:
        self._find(key)
        with self._lock:
            self._blobs.pop(key, None)

    def tamper(self, key: str, data: bytes) -> None:
        """Replace a blob's bytes and keep every property, its Content-MD5 too (what only a read finds)."""
        details, _ = self._find(key)
        with self._lock:
            self._blobs[key] = (details, bytes(data))

    def _store(self, details: ObjectDetails, data: bytes, tier: str | None, if_match: str | None = None,
               if_none_match: bool = False) -> None:  # fmt: skip
        with self._lock:
            current = self._blobs.get(details.key)
            if if_none_match and current is not None:
                raise Conflict(f"{details.key!r} exists already")
            if if_match is not None and (current is None or current[0].version != if_match):
                raise Conflict(f"{details.key!r} is not at version {if_match}")
            stored = replace(details, size=len(data), storage_class=tier or "Hot", generation=None, crc32c=None,
                             created=None, version=str(next(self._versions)))  # fmt: skip
            self._blobs[details.key] = (stored, data)

    def _find(self, key: str) -> tuple[ObjectDetails, bytes]:
        with self._lock:
            found = self._blobs.get(check_key(key))
        if found is None:
            raise NotFound(f"no blob {key!r}")
        return found
