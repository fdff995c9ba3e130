"""The use cases both clouds call. Each is safe to run twice with the same input.

- ``submit_upload``: the HTTP upload. Checks size and type, stores the bytes under
  ``uploads/`` and accepts the job.
- ``accept_upload``: an upload event becomes a PENDING job and one queue message.
  Keys outside ``uploads/`` are ignored: that is the loop guard for ``results/``.
- ``process_job``: one queue message. Renders the grayscale copy into ``results/``
  and marks the job DONE. A bad image ends it FAILED with a reason; anything
  that may succeed later raises so the platform retries.
- ``fail_job``: the dead-letter path, which ends a job FAILED.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import posixpath
import threading
import unicodedata
import urllib.parse
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from core import config, imaging, logs
from core.errors import BadRequest, Conflict, Frozen, InvalidImage, NotFound, PayloadTooLarge
from core.jobs import Job, JsonJobStore, Status, job_id_for, utcnow
from core.names import DEFERRED_KEY, MIGRATED_KEY
from core.ports import JobStore, ObjectInfo, ObjectStore, TaskQueue, check_key

log = logging.getLogger(__name__)

UPLOADS = "uploads/"
RESULTS = "results/"
FREEZE_KEY = "_cutover/frozen.json"
"""While this object exists, the store takes no new uploads: the cutover to another cloud is under way.
Uploads written to the store before it are still processed here; later ones are left for the other cloud."""
REPLICA_KEY = "_cutover/replica.json"
"""While this object exists, the store is a replica of another cloud's (live sync): it takes no uploads and
starts no job for a copied upload. The switch removes it; a rollback writes it again, and an upload written
here before that is still processed here."""
SWITCHED_KEY = "_cutover/switched.json"
"""Written by the switch: which freeze it ended (``{"freeze": ...}``), so a tag left by an aborted cutover is known."""
DEFERRED_PREFIX = "_cutover/deferred/"
"""A held store's journal of the uploads it left for the other side: what a switch or an abort accepts."""


@dataclass
class Services:
    """What the use cases need; each cloud builds one, tests build one from fakes."""

    store: ObjectStore
    queue: TaskQueue
    jobs: JobStore
    render: Callable[[bytes], imaging.Rendered] = imaging.grayscale
    clock: Callable[[], datetime] = utcnow
    upload_events: bool = False
    """True where a write under ``uploads/`` raises an event that calls ``accept_upload`` (the
    deployed clouds, the local stacks): then ``submit_upload`` leaves the one message to that event."""
    hold_key: str = FREEZE_KEY
    """The marker that holds this store: ``FREEZE_KEY`` on the source cloud, ``REPLICA_KEY`` on the target."""

    @classmethod
    def over(cls, store: ObjectStore, queue: TaskQueue) -> Services:
        """Services whose job records live in ``store`` under ``jobs/``."""
        return cls(store, queue, JsonJobStore(store))


def job_message(job_id: str) -> dict[str, Any]:
    """The queue payload that asks for one job to be processed."""
    return {"job_id": job_id}


def parse_job_message(payload: Mapping[str, Any] | Any) -> str:
    """The job id in a queue payload; ``BadRequest`` if there is none."""
    job_id = payload.get("job_id") if isinstance(payload, Mapping) else None
    if not isinstance(job_id, str) or not job_id:
        raise BadRequest(f"queue message has no job_id: {payload!r:.200}")
    return job_id


def submit_upload(
    services: Services,
    data: bytes,
    *,
    filename: str | None = None,
    max_bytes: int | None = None,
) -> Job:
    """Store an HTTP upload under ``uploads/`` and accept it as a job.

    Raises ``BadRequest`` (empty), ``PayloadTooLarge`` (over the cap),
    ``InvalidImage`` (not an image, sniffed from the bytes) or ``ImageTooLarge``.
    The key is ``uploads/<md5 prefix>-<safe filename>``: the same bytes under
    the same name are the same job, and different bytes never overwrite each other.
    """
    cap = config.max_upload_bytes() if max_bytes is None else max_bytes
    reason = frozen(services)
    if reason is not None and services.hold_key == REPLICA_KEY:
        raise Frozen(f"this cloud is a replica of the current one ({reason}); upload to the current one")
    if reason is not None:
        raise Frozen(f"uploads are frozen for a move to another cloud ({reason}); try the new endpoint shortly")
    if not data:
        raise BadRequest("the upload is empty: send the image bytes in the body or as form field 'file'")
    if len(data) > cap:
        raise PayloadTooLarge(
            f"the upload is {len(data):,} bytes; the limit is {cap:,} ({config.MAX_UPLOAD_BYTES_VAR})"
        )
    info = imaging.probe(data)
    md5 = hashlib.md5(data).hexdigest()
    key = f"{UPLOADS}{md5[:12]}-{safe_name(filename, info.name)}"
    # A Conflict means it was uploaded before (same name, same leading hash); the job id checks the whole hash.
    try:
        written: ObjectInfo | None = services.store.put(key, data, content_type=info.content_type, if_none_match=True)
    except Conflict:
        written = None
    # The hold may have landed between the check above and the write. Then, by accept_upload's rule, the upload
    # is the other side's, and this side's storage event makes no message for it: a record made here would wait
    # for ever (a rollback would wait for it in vain). So it is taken back and refused, as the check would have.
    hold = _hold(services)
    replica = services.hold_key == REPLICA_KEY
    if written is not None and hold is not None and not written_before(written.updated, hold.updated, replica):
        with contextlib.suppress(NotFound):
            services.store.delete(key)
        raise Frozen(f"uploads were held for a move between the clouds while this one was written ({key}); "
                     "upload it again, to the current cloud")  # fmt: skip
    return _record(services, key, md5, info.content_type, enqueue=not services.upload_events, input_format=info.name)


def accept_upload(
    services: Services,
    key: str,
    *,
    md5: str | None = None,
    content_type: str | None = None,
    created: datetime | None = None,
    enqueue: bool = True,
) -> Job | None:
    """Turn an upload event into a job and a queue message; ``None`` if the key is not an upload, or not ours.

    Idempotent: a duplicate event finds the same job. The message is sent
    again while the job is PENDING (a crash may have come between the record
    and the message); ``process_job`` takes duplicates in its stride.
    ``enqueue=False`` makes the record only: an HTTP upload whose storage event
    will send the message, so that each upload costs one message, not two.

    During a migration each upload is processed by exactly one cloud (docs/migration.md): the source
    cloud takes those written before its freeze marker (``created``, else the object's time), the
    target those written after it, tagged ``DEFERRED_KEY`` by the copy; an upload copied from the
    source without that tag is the source's. A held store journals what it leaves for the other side.
    """
    if not is_upload(key):
        return None
    hold = _hold(services)
    info: ObjectInfo | None = None
    replica = services.hold_key == REPLICA_KEY
    if md5 is None or content_type is None or replica or (hold is not None and created is None):
        try:
            info = services.store.head(key)
        except NotFound:
            log.info("upload %r is gone; nothing to accept", key)
            return None
    if hold is not None:
        when = created or (info.updated if info else None)
        before = written_before(when, hold.updated, replica)
        if before and not (replica and info and info.metadata.get(MIGRATED_KEY)):
            pass  # written here before the hold (a freeze, or a rollback's replica marker): ours, held or not
        elif replica and not (info and info.metadata.get(DEFERRED_KEY)):
            log.info("this store is a replica; %r is the source cloud's upload", key)
            return None
        elif _left_for_the_other_side(services, key):
            return None
    if info is not None and not _ours_after_a_move(services, key, info):
        return None
    if md5 is None or content_type is None:
        assert info is not None
        md5 = md5 or info.md5 or _content_digest(services, key, info)
        content_type = content_type or info.content_type
    return _record(services, key, md5, content_type, enqueue=enqueue)


def written_before(when: datetime | None, hold: datetime | None, replica: bool) -> bool:
    """Whether an upload written at ``when`` came before the hold marker written at ``hold``.

    Azure's times have whole seconds. On a replica's hold (the rollback's) an upload of the same second counts as
    before: it is processed where it was written, and the rollback waits for its job and copies it back with its
    record. A GCS freeze keeps the strict rule: its times have milliseconds, and replication tags an upload for
    Azure by the same rule (``created >= freeze``), so the two clouds never both take one.
    """
    if when is None or hold is None:
        return False
    return when <= hold if replica else when < hold


def _hold(services: Services) -> ObjectInfo | None:
    """The marker holding this store (its info: ``updated`` is when it was written), or None."""
    try:
        return services.store.head(services.hold_key)
    except NotFound:
        return None


def _left_for_the_other_side(services: Services, key: str) -> bool:
    """Journal ``key`` as left for the other side; False if the hold was lifted meanwhile (then it is ours).

    Journal first, then look again: a switch or abort removes the marker first, then reads the journal,
    so either it finds this entry or this look finds the marker gone. Nothing falls between.
    """
    journal = DEFERRED_PREFIX + urllib.parse.quote(key, safe="")
    services.store.put(journal, key.encode(), content_type="text/plain")
    if _hold(services) is None:
        return False
    log.info("uploads are held for a cutover; %r is left for the other cloud (journalled)", key)
    return True


def _ours_after_a_move(services: Services, key: str, info: ObjectInfo) -> bool:
    """False for an upload copied from the source cloud that the source cloud processes."""
    if not info.metadata.get(MIGRATED_KEY):
        return True  # written here
    tag = info.metadata.get(DEFERRED_KEY)
    if not tag:
        log.info("%r was copied from the source cloud, which processes it; its job record is copied too", key)
        return False
    try:
        switched = json.loads(services.store.get(SWITCHED_KEY).data or b"{}").get("freeze")
    except (NotFound, ValueError):
        switched = None
    if switched != tag:
        log.info("%r was left for this cloud by a cutover that did not switch (%s); not ours", key, tag)
        return False
    return True


def accept_deferred(services: Services, *, workers: int = 16) -> list[Job]:
    """Accept every upload in this store's journal, then clear it: the switch (target) or the abort (source).

    ``workers`` entries at once: the switch runs while uploads are refused, and each entry is a few requests.
    """

    def accept(entry: ObjectInfo) -> Job | None:
        job = accept_upload(services, urllib.parse.unquote(entry.key[len(DEFERRED_PREFIX) :]))
        services.store.delete(entry.key)
        return job

    with ThreadPoolExecutor(max_workers=workers) as pool:
        return [job for job in pool.map(accept, list(services.store.list(DEFERRED_PREFIX))) if job is not None]


def _content_digest(services: Services, key: str, head: ObjectInfo) -> str:
    """The MD5 of an upload whose store keeps none; its version when it is over the cap (it is never read).

    Such a job ends FAILED in ``process_job`` with the limit named.
    """
    try:
        return hashlib.md5(services.store.get(key, max_bytes=config.max_upload_bytes()).data).hexdigest()
    except PayloadTooLarge:
        return f"version:{head.version}"


def _record(
    services: Services, key: str, md5: str, content_type: str | None, *, enqueue: bool, input_format: str | None = None
) -> Job:
    """The upload's job record, made if new, and its message while it is PENDING (unless ``enqueue`` is False)."""
    new = Job.new(job_id_for(key, md5), key, content_type, input_format=input_format, now=services.clock())
    job = services.jobs.create(new)
    if job.status is Status.PENDING and enqueue:
        services.queue.send(job_message(job.id))
    return job


def process_job(services: Services, job_id: str) -> Job:
    """Render the job's upload in grayscale; return the final record.

    Permanent failures (a bad image, an upload over the byte cap, a missing or replaced upload) end the job
    FAILED and return normally, so the message is not redelivered. Anything
    else (``TransientError``, network, ``Busy``) propagates for a retry.
    """
    lease = timedelta(seconds=config.lease_seconds())
    job = services.jobs.update(job_id, lambda j: j.start(now=services.clock(), lease=lease))
    if job.terminal:
        return job
    try:
        # The cap is checked from the object's size before its bytes are read: a bucket upload has no HTTP limit.
        upload = services.store.get(job.source, max_bytes=config.max_upload_bytes())
    except NotFound:
        return _fail(services, job, f"the upload {job.source} no longer exists")
    except PayloadTooLarge as exc:
        return _fail(services, job, f"the upload is too large: {exc} ({config.MAX_UPLOAD_BYTES_VAR})")
    if job_id_for(job.source, hashlib.md5(upload.data).hexdigest()) != job.id:
        return _fail(services, job, f"the upload {job.source} was replaced by newer content, which has its own job")
    try:
        rendered = services.render(upload.data)
    except InvalidImage as exc:
        return _fail(services, job, str(exc))
    result_key = result_key_for(job.source, rendered.extension)
    services.store.put(
        result_key,
        rendered.data,
        content_type=rendered.content_type,
        metadata={"job_id": job.id, "source": job.source},
    )
    log.info("rendered %s into %s", job.source, result_key)  # once per job, barring a crash before the record
    return services.jobs.update(
        job.id,
        lambda j: j.complete(
            result_key,
            content_type=rendered.source_type or None,
            input_format=rendered.input_format or None,
            output_format=rendered.output_format or None,
            now=services.clock(),
        ),
    )


def handle_job_message(services: Services, payload: Any) -> Job | None:
    """A jobs-queue message, from either cloud: process its job; None for a message that can never work.

    A malformed message or an unknown job is logged and dropped (acknowledged), never
    redelivered forever; anything transient propagates so the platform retries.
    """
    try:
        job_id = parse_job_message(payload)
    except BadRequest as exc:
        log.error("dropped a malformed job message: %s", exc)
        return None
    with logs.context(job_id=job_id):
        try:
            job = process_job(services, job_id)
        except NotFound:
            log.error("dropped a message for unknown job %s", job_id)
            return None
        log.info("job %s is %s after %d attempt(s)", job.id, job.status.value, job.attempts)
        return job


def handle_dead_letter(services: Services, payload: Any, reason: str) -> Job | None:
    """A jobs message the platform gave up on (dead letter, poison queue): its job ends FAILED."""
    try:
        job_id = parse_job_message(payload)
    except BadRequest as exc:
        log.error("dropped a malformed dead letter: %s", exc)
        return None
    with logs.context(job_id=job_id):
        job = fail_job(services, job_id, reason)
        log.warning("dead letter for job %s: %s", job_id, job.status.value if job else "unknown job")
        return job


def retry_job(services: Services, job_id: str) -> tuple[Job, bool]:
    """Run a FAILED job again (``POST /jobs/{id}/retry``): PENDING, attempts afresh, and its message sent.

    Returns the record and whether this call retried it; a job in any other state
    is returned unchanged with False. Of two concurrent retries one wins: the
    record is written conditionally, and the loser re-reads it PENDING.
    """
    before: list[Status] = []

    def change(job: Job) -> Job:
        before.append(job.status)
        return job.retry(now=services.clock())

    job = services.jobs.update(job_id, change)
    if before[-1] is not Status.FAILED:
        return job, False
    services.queue.send(job_message(job.id))  # no storage event comes for a retry
    return job, True


def fail_job(services: Services, job_id: str, reason: str) -> Job | None:
    """End a job FAILED (the dead-letter path); a DONE job stays DONE. ``None`` if unknown."""
    try:
        return services.jobs.update(job_id, lambda j: j.fail(reason, now=services.clock()))
    except NotFound:
        log.warning("dead letter for unknown job %r: %s", job_id, reason)
        return None


def _fail(services: Services, job: Job, reason: str) -> Job:
    log.info("job %s failed: %s", job.id, reason)
    return services.jobs.update(job.id, lambda j: j.fail(reason, now=services.clock()))


def frozen(services: Services) -> str | None:
    """The reason uploads are held (frozen, or a replica), or None."""
    try:
        record = json.loads(services.store.get(services.hold_key).data or b"{}")
    except NotFound:
        return None
    except ValueError:
        return "frozen"
    return str(record.get("reason") or "frozen")


def is_upload(key: str) -> bool:
    """True for an object under ``uploads/``: not the folder placeholder, nor a key no store takes (``check_key``).

    ``uploads/../jobs/x.json`` would make a job that reads and writes outside ``uploads/`` and ``results/``.
    """
    try:
        check_key(key)
    except BadRequest:
        return False
    return key.startswith(UPLOADS) and len(key) > len(UPLOADS) and not key.endswith("/")


def result_key_for(source_key: str, extension: str) -> str:
    """``uploads/a/b.jpg`` -> ``results/a/b.jpg``; the extension is appended when the format changes."""
    name = source_key[len(UPLOADS) :] if source_key.startswith(UPLOADS) else source_key
    current = posixpath.splitext(name)[1].lower()
    same = current == extension or (extension == ".jpg" and current in (".jpeg", ".jpe", ".jfif"))
    return f"{RESULTS}{name if same else name + extension}"


def safe_name(filename: str | None, fallback_ext: str) -> str:
    """A filename made safe as the last part of a key: no folders, no control characters."""
    name = unicodedata.normalize("NFC", filename or "")
    name = name.replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(ch for ch in name if unicodedata.category(ch)[0] != "C").strip().strip(".")
    name = name[:200]
    return name or f"upload.{'jpg' if fallback_ext == 'jpeg' else fallback_ext}"


class LazyTaskQueue:
    """A ``TaskQueue`` made on its first ``send``: a function that never publishes never loads the client."""

    def __init__(self, factory: Callable[[], TaskQueue]) -> None:
        self._factory = factory
        self._queue: TaskQueue | None = None
        self._lock = threading.Lock()

    def send(self, payload: Mapping[str, Any]) -> str:
        if self._queue is None:
            with self._lock:
                if self._queue is None:
                    self._queue = self._factory()
        return self._queue.send(payload)


class LazyServices:
    """One ``Services`` per process, built by ``build`` on first use and reused by warm invocations.

    Each cloud's functions keep one of these; tests swap in fakes with ``use``.
    """

    def __init__(self, build: Callable[[], Services], *, on_first_use: Callable[[], None] | None = None) -> None:
        self._build = build
        self._on_first_use = on_first_use
        self._services: Services | None = None
        self._lock = threading.Lock()

    def __call__(self) -> Services:
        with self._lock:
            if self._services is None:
                if self._on_first_use is not None:
                    self._on_first_use()
                self._services = self._build()
            return self._services

    def use(self, replacement: Services | None) -> None:
        """Replace the services (tests), or forget them with None so the next call builds anew."""
        with self._lock:
            self._services = replacement
