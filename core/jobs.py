"""Job records: the data, their transitions, and a store with conditional writes.

A job moves PENDING -> PROCESSING -> DONE or FAILED. DONE and FAILED are
terminal: applying any transition to them returns them unchanged, so a
duplicate or late event is a no-op. Each start of processing (first try or
retry) increments ``attempts``.
"""

from __future__ import annotations

import enum
import hashlib
import json
import random
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from core.errors import Busy, Conflict, CoreError, NotFound
from core.logs import redact_identities
from core.ports import ObjectStore, StoredObject

JOBS_PREFIX = "jobs/"
_JOB_ID = re.compile(r"[A-Za-z0-9_-]{1,128}")


class Status(enum.StrEnum):
    PENDING = "PENDING"
    PROCESSING = "PROCESSING"
    DONE = "DONE"
    FAILED = "FAILED"


TERMINAL = frozenset({Status.DONE, Status.FAILED})


def utcnow() -> datetime:
    """The current time, UTC, to the millisecond (what records store)."""
    now = datetime.now(UTC)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


def isoformat(moment: datetime) -> str:
    """ISO-8601 in UTC with a ``Z``: ``2026-11-27T06:11:02.123Z``."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_time(text: str) -> datetime:
    """Inverse of ``isoformat``; accepts any ISO-8601 time with an offset."""
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        raise ValueError(f"time {text!r} has no UTC offset")
    return moment.astimezone(UTC)


def job_id_for(source_key: str, md5_hex: str) -> str:
    """The job id of an upload: a digest of its key and its content's MD5.

    The same upload always maps to the same id, on either cloud, so a
    duplicate event finds the same job and a migrated upload finds its record.
    """
    digest = hashlib.sha256(f"{source_key}\n{md5_hex.lower()}".encode()).hexdigest()
    return digest[:32]


@dataclass(frozen=True)
class Job:
    """One job record, as stored in ``jobs/<id>.json`` and served by the API."""

    id: str
    status: Status
    source: str
    """Key of the upload within the store, e.g. ``uploads/cat.jpg``."""
    result: str | None
    """Key of the grayscale output, e.g. ``results/cat.jpg``, once DONE."""
    content_type: str | None
    """Content type of the upload: as stored until processed, then as sniffed from its bytes."""
    input_format: str | None
    """The upload's format as sniffed from its bytes (``jpeg``, ``heic``, ``avif``, ``jxl``, ...), once known."""
    output_format: str | None
    """The result's format (``jpeg``, ``png``, ``gif``, ``webp``, ``avif``), once DONE."""
    error: str | None
    attempts: int
    created: datetime
    updated: datetime

    @classmethod
    def new(
        cls,
        job_id: str,
        source: str,
        content_type: str | None,
        *,
        input_format: str | None = None,
        now: datetime | None = None,
    ) -> Job:
        """A fresh PENDING record."""
        moment = now or utcnow()
        return cls(job_id, Status.PENDING, source, None, content_type, input_format, None, None, 0, moment, moment)

    def to_dict(self) -> dict[str, Any]:
        """The JSON-ready record, exactly the fields of DESIGN.md."""
        record = asdict(self)
        record["status"] = self.status.value
        record["created"] = isoformat(self.created)
        record["updated"] = isoformat(self.updated)
        return record

    def to_json(self) -> bytes:
        return json.dumps(self.to_dict(), ensure_ascii=False, indent=1).encode()

    @classmethod
    def from_dict(cls, record: Mapping[str, Any]) -> Job:
        try:
            return cls(
                id=str(record["id"]),
                status=Status(record["status"]),
                source=str(record["source"]),
                result=record.get("result"),
                content_type=record.get("content_type"),
                input_format=record.get("input_format"),
                output_format=record.get("output_format"),
                error=record.get("error"),
                attempts=int(record.get("attempts", 0)),
                created=parse_time(record["created"]),
                updated=parse_time(record["updated"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise CoreError(f"malformed job record: {exc!r}") from exc

    @classmethod
    def from_json(cls, data: bytes) -> Job:
        try:
            record = json.loads(data)
        except ValueError as exc:
            raise CoreError(f"job record is not JSON: {exc}") from exc
        if not isinstance(record, dict):
            raise CoreError("job record is not a JSON object")
        return cls.from_dict(record)

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL

    # Transitions. Each returns a new record, or ``self`` when there is nothing to do.

    def start(self, *, now: datetime | None = None, lease: timedelta | None = None) -> Job:
        """Claim the job for one processing attempt.

        A PROCESSING job whose last update is younger than ``lease`` belongs to
        a live worker: raise ``Busy`` so the platform redelivers later. Once the
        lease has run out, the worker is presumed dead and this attempt takes over.
        """
        if self.terminal:
            return self
        moment = now or utcnow()
        if self.status is Status.PROCESSING and lease is not None and moment - self.updated < lease:
            raise Busy(f"job {self.id} is being processed (attempt {self.attempts}); retry later")
        return replace(self, status=Status.PROCESSING, attempts=self.attempts + 1, error=None, updated=moment)

    def complete(
        self,
        result_key: str,
        *,
        content_type: str | None = None,
        input_format: str | None = None,
        output_format: str | None = None,
        now: datetime | None = None,
    ) -> Job:
        """Mark the job DONE with its result (and the upload's sniffed type and formats); no-op if terminal."""
        if self.terminal:
            return self
        return replace(
            self,
            status=Status.DONE,
            result=result_key,
            content_type=content_type or self.content_type,
            input_format=input_format or self.input_format,
            output_format=output_format,
            error=None,
            updated=now or utcnow(),
        )

    def retry(self, *, now: datetime | None = None) -> Job:
        """A FAILED job back to PENDING, its attempts counted afresh; ``self`` for any other status."""
        if self.status is not Status.FAILED:
            return self
        moment = now or utcnow()
        return replace(
            self, status=Status.PENDING, result=None, output_format=None, error=None, attempts=0, updated=moment
        )

    def fail(self, reason: str, *, now: datetime | None = None) -> Job:
        """Mark the job FAILED with a human-readable reason; no-op if already terminal."""
        if self.terminal:
            return self
        return replace(self, status=Status.FAILED, error=redact_identities(reason), updated=now or utcnow())


class JsonJobStore:
    """A ``JobStore`` keeping one JSON object per job in an ``ObjectStore``.

    Writes are conditional on the version that was read (GCS generation,
    Azure ETag), so concurrent writers never lose an update.
    """

    def __init__(self, store: ObjectStore, *, prefix: str = JOBS_PREFIX, max_attempts: int = 64) -> None:
        self.store = store
        self.prefix = prefix
        self.max_attempts = max_attempts

    def key(self, job_id: str) -> str:
        """The record's key; an id that no job could have is simply not found."""
        if not _JOB_ID.fullmatch(job_id):
            raise NotFound(f"no job {job_id!r}")
        return f"{self.prefix}{job_id}.json"

    def get(self, job_id: str) -> Job:
        return Job.from_json(self._read(job_id).data)

    def create(self, job: Job) -> Job:
        try:
            self.store.put(self.key(job.id), job.to_json(), content_type="application/json", if_none_match=True)
        except Conflict:
            return self.get(job.id)
        return job

    def update(self, job_id: str, change: Callable[[Job], Job]) -> Job:
        for attempt in range(self.max_attempts):
            stored = self._read(job_id)
            current = Job.from_json(stored.data)
            changed = change(current)
            if changed == current:
                return current
            try:
                self.store.put(
                    self.key(job_id),
                    changed.to_json(),
                    content_type="application/json",
                    if_match=stored.info.version,
                )
                return changed
            except Conflict:
                # Lost the race: back off a little, with jitter, then re-read.
                time.sleep(random.uniform(0, min(0.2, 0.005 * 2**attempt)))
        raise Conflict(f"job {job_id}: gave up after {self.max_attempts} conflicting writes")

    def _read(self, job_id: str) -> StoredObject:
        try:
            return self.store.get(self.key(job_id))
        except NotFound:
            raise NotFound(f"no job {job_id!r}") from None
