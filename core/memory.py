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
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime
from typing import Any

from core.errors import BadRequest, Conflict, NotFound
from core.ports import DEFAULT_CHUNK_SIZE, DEFAULT_PAGE_SIZE, ObjectInfo, StoredObject, check_key, check_size

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
