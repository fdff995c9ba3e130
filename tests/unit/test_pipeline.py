"""core.pipeline use cases, on the in-memory fakes."""

from __future__ import annotations

import hashlib
import threading
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from core.errors import (
    BadRequest,
    Busy,
    ConfigError,
    ImageTooLarge,
    InvalidImage,
    NotFound,
    PayloadTooLarge,
    TransientError,
)
from core.imaging import Rendered
from core.jobs import Status, job_id_for
from core.memory import InMemoryObjectStore, InMemoryTaskQueue
from core.pipeline import (
    Services,
    accept_upload,
    fail_job,
    parse_job_message,
    process_job,
    result_key_for,
    safe_name,
    submit_upload,
)
from core.ports import ObjectInfo, StoredObject
from tests.helper import decode, encode, hopper, png_bytes, tiny_animation

JPEG = encode(hopper(), "JPEG", quality=90)


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 11, 27, 6, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def services(clock: Clock) -> Services:
    svc = Services.over(InMemoryObjectStore(), InMemoryTaskQueue())
    svc.clock = clock
    return svc


def queued(services: Services) -> list[str]:
    assert isinstance(services.queue, InMemoryTaskQueue)
    return [parse_job_message(m) for m in services.queue.drain()]


def keys(services: Services, prefix: str = "") -> list[str]:
    return [i.key for i in services.store.list(prefix)]


# submit_upload -----------------------------------------------------------------------------------


def test_submit_stores_the_upload_and_queues_one_job(services: Services) -> None:
    job = submit_upload(services, JPEG, filename="cat photo.jpg")
    md5 = hashlib.md5(JPEG).hexdigest()
    assert job.source == f"uploads/{md5[:12]}-cat photo.jpg"
    assert job.id == job_id_for(job.source, md5)
    assert (job.status, job.content_type) == (Status.PENDING, "image/jpeg")
    assert services.store.get(job.source).data == JPEG
    assert services.store.head(job.source).content_type == "image/jpeg"
    assert queued(services) == [job.id]
    assert services.jobs.get(job.id) == job


def test_submit_sniffs_the_type_from_the_bytes(services: Services) -> None:
    job = submit_upload(services, encode(hopper(), "PNG"), filename="lies.jpg")
    assert job.content_type == "image/png"


def test_submit_without_a_filename_names_it_after_the_format(services: Services) -> None:
    job = submit_upload(services, encode(hopper(), "WEBP"))
    assert job.source.endswith("-upload.webp")


def test_submitting_the_same_bytes_twice_is_one_job(services: Services) -> None:
    first = submit_upload(services, JPEG, filename="a.jpg")
    second = submit_upload(services, JPEG, filename="a.jpg")
    assert first.id == second.id
    assert keys(services, "uploads/") == [first.source]


@pytest.mark.parametrize(
    ("data", "error"),
    [
        (b"", BadRequest),
        (b"just some text", InvalidImage),
        (png_bytes(40_000, 40_000, 8, 2), ImageTooLarge),
        (b"\xff" * 2_000, InvalidImage),
    ],
    ids=["empty", "text", "bomb", "garbage"],
)
def test_bad_uploads_are_refused_and_nothing_is_stored(services: Services, data: bytes, error: type) -> None:
    with pytest.raises(error) as err:
        submit_upload(services, data, filename="x.jpg")
    assert str(err.value)
    assert keys(services) == []
    assert queued(services) == []


def test_the_size_cap_is_checked_before_anything_else(services: Services, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GRAYSCALE_MAX_UPLOAD_BYTES", str(len(JPEG) - 1))
    with pytest.raises(PayloadTooLarge, match="GRAYSCALE_MAX_UPLOAD_BYTES"):
        submit_upload(services, JPEG)
    assert submit_upload(services, JPEG, max_bytes=len(JPEG)).status is Status.PENDING


@pytest.mark.parametrize(
    ("filename", "expected"),
    [
        ("../../etc/passwd.jpg", "passwd.jpg"),
        ("C:\\Users\\me\\pic.png", "pic.png"),
        ("tab\there\n.jpg", "tabhere.jpg"),
        ("фото #1 ?%.jpg", "фото #1 ?%.jpg"),
        ("...", "upload.jpg"),
        (None, "upload.jpg"),
    ],
)
def test_safe_name(filename: str | None, expected: str) -> None:
    assert safe_name(filename, "jpeg") == expected


# accept_upload -----------------------------------------------------------------------------------


@pytest.mark.parametrize("key", ["results/cat.jpg", "jobs/x.json", "uploads/", "uploads/folder/", "cat.jpg"])
def test_accept_ignores_everything_but_uploads(services: Services, key: str) -> None:
    services.store.put(key, JPEG)
    assert accept_upload(services, key) is None
    assert keys(services, "jobs/") == ([key] if key.startswith("jobs/") else [])
    assert queued(services) == []


@pytest.mark.parametrize(
    "key",
    ["uploads/../jobs/x.json", "uploads/a/../../results/b.jpg", "uploads/./a.jpg", "uploads\\..\\jobs\\x.json",
     "uploads/..\\results/b.jpg"],
)  # fmt: skip
def test_keys_with_dot_segments_are_never_stored_nor_accepted(services: Services, key: str) -> None:
    # Such a job would read and write outside uploads/ and results/ (a job record, another result).
    with pytest.raises(BadRequest, match="segment"):
        services.store.put(key, JPEG)
    assert accept_upload(services, key, md5="0" * 32, content_type="image/jpeg") is None
    assert keys(services) == [] and queued(services) == []


def test_accept_reads_the_md5_from_the_store_when_the_event_has_none(services: Services) -> None:
    services.store.put("uploads/odd name #1.jpg", JPEG, content_type="image/jpeg")
    job = accept_upload(services, "uploads/odd name #1.jpg")
    assert job is not None
    assert job.id == job_id_for("uploads/odd name #1.jpg", hashlib.md5(JPEG).hexdigest())
    assert job.content_type == "image/jpeg"


def test_accept_of_a_vanished_upload_does_nothing(services: Services) -> None:
    assert accept_upload(services, "uploads/gone.jpg") is None
    assert queued(services) == []


def test_duplicate_events_make_one_job_and_stop_queueing_once_it_runs(services: Services) -> None:
    services.store.put("uploads/a.jpg", JPEG)
    first = accept_upload(services, "uploads/a.jpg")
    again = accept_upload(services, "uploads/a.jpg")
    assert first is not None and again is not None
    assert first.id == again.id
    assert queued(services) == [first.id, first.id]  # PENDING: re-sent, in case the first send was lost
    process_job(services, first.id)
    assert accept_upload(services, "uploads/a.jpg").status is Status.DONE  # type: ignore[union-attr]
    assert queued(services) == []


# process_job -------------------------------------------------------------------------------------


def test_process_writes_the_result_and_marks_done(services: Services) -> None:
    job = submit_upload(services, JPEG, filename="cat.jpg")
    done = process_job(services, job.id)
    assert (done.status, done.attempts, done.error) == (Status.DONE, 1, None)
    assert done.result == job.source.replace("uploads/", "results/")
    result = services.store.get(done.result)
    assert result.info.content_type == "image/jpeg"
    assert dict(result.info.metadata) == {"job_id": job.id, "source": job.source}
    assert decode(result.data).mode == "L"


def test_processing_twice_is_a_no_op(services: Services) -> None:
    job = submit_upload(services, JPEG, filename="cat.jpg")
    done = process_job(services, job.id)
    version = services.store.head(done.result or "").version
    assert process_job(services, job.id) == done
    assert services.store.head(done.result or "").version == version


def test_results_never_trigger_processing(services: Services) -> None:
    done = process_job(services, submit_upload(services, JPEG, filename="cat.jpg").id)
    queued(services)
    assert accept_upload(services, done.result or "") is None
    assert queued(services) == []


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"this is not an image", "not a supported image"),
        (JPEG[: len(JPEG) // 2], "truncated"),
        (JPEG[: len(JPEG) - 50], "damaged or truncated JPEG"),
        (b"", "empty"),
        (tiny_animation(1_001), "more than 1,000 frames is over the limit (GRAYSCALE_MAX_FRAMES)"),
    ],
    ids=["text", "truncated-header", "truncated-data", "empty", "too-many-frames"],
)
def test_a_bad_image_ends_failed_with_a_reason(services: Services, data: bytes, reason: str) -> None:
    services.store.put("uploads/bad.jpg", data)
    job = accept_upload(services, "uploads/bad.jpg")
    assert job is not None
    failed = process_job(services, job.id)
    assert failed.status is Status.FAILED
    assert reason in (failed.error or "")
    assert failed.attempts == 1
    assert keys(services, "results/") == []
    assert process_job(services, job.id) == failed  # a redelivery changes nothing


def test_a_replaced_upload_fails_the_old_job(services: Services) -> None:
    services.store.put("uploads/a.jpg", JPEG)
    old = accept_upload(services, "uploads/a.jpg")
    services.store.put("uploads/a.jpg", encode(hopper(), "JPEG", quality=50))
    assert old is not None
    failed = process_job(services, old.id)
    assert failed.status is Status.FAILED
    assert "replaced" in (failed.error or "")


def test_a_deleted_upload_fails_the_job(services: Services) -> None:
    job = submit_upload(services, JPEG)
    services.store.delete(job.source)
    assert "no longer exists" in (process_job(services, job.id).error or "")


class CountingReads(InMemoryObjectStore):
    """Counts the reads of uploads that returned bytes.

    With ``md5=False`` it keeps no MD5, as for GCS composite objects and some Azure block blobs.
    """

    def __init__(self, *, md5: bool = True) -> None:
        super().__init__()
        self.keep_md5, self.reads = md5, 0

    def get(self, key: str, *, max_bytes: int | None = None) -> StoredObject:
        got = super().get(key, max_bytes=max_bytes)
        self.reads += key.startswith("uploads/")
        return got if self.keep_md5 else StoredObject(got.data, replace(got.info, md5=None))

    def head(self, key: str) -> ObjectInfo:
        info = super().head(key)
        return info if self.keep_md5 else replace(info, md5=None)


@pytest.mark.parametrize("md5", [True, False], ids=["with an md5", "without an md5"])
def test_a_bucket_upload_over_the_cap_ends_failed_unread(
    clock: Clock, monkeypatch: pytest.MonkeyPatch, md5: bool
) -> None:
    store = CountingReads(md5=md5)
    services = Services.over(store, InMemoryTaskQueue())
    services.clock = clock
    monkeypatch.setenv("GRAYSCALE_MAX_UPLOAD_BYTES", str(len(JPEG) - 1))
    store.put("uploads/huge.jpg", JPEG, content_type="image/jpeg")
    job = accept_upload(services, "uploads/huge.jpg")
    assert job is not None and queued(services) == [job.id]
    assert accept_upload(services, "uploads/huge.jpg") == job  # a duplicate event finds the same job
    failed = process_job(services, job.id)
    assert failed.status is Status.FAILED
    assert failed.error == (
        f"the upload is too large: 'uploads/huge.jpg' is {len(JPEG):,} bytes; "
        f"the limit is {len(JPEG) - 1:,} (GRAYSCALE_MAX_UPLOAD_BYTES)"
    )
    assert store.reads == 0
    assert keys(services, "results/") == []
    assert process_job(services, job.id) == failed  # a redelivery changes nothing


def test_a_bucket_upload_at_the_cap_is_processed(services: Services, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GRAYSCALE_MAX_UPLOAD_BYTES", str(len(JPEG)))
    services.store.put("uploads/just.jpg", JPEG)
    job = accept_upload(services, "uploads/just.jpg")
    assert job is not None
    assert process_job(services, job.id).status is Status.DONE


def test_unknown_job_is_not_found(services: Services) -> None:
    with pytest.raises(NotFound):
        process_job(services, "f" * 32)


class FlakyStore(InMemoryObjectStore):
    """Fails the first ``failures`` writes under results/ with a transient error."""

    def __init__(self, failures: int) -> None:
        super().__init__()
        self.failures = failures

    def put(self, key: str, data: bytes, **kwargs):  # type: ignore[no-untyped-def,override]
        if key.startswith("results/") and self.failures > 0:
            self.failures -= 1
            raise TransientError("injected: storage unavailable")
        return super().put(key, data, **kwargs)


def test_a_transient_failure_raises_and_the_retry_succeeds(clock: Clock) -> None:
    services = Services.over(FlakyStore(failures=1), InMemoryTaskQueue())
    services.clock = clock
    job = submit_upload(services, JPEG)
    with pytest.raises(TransientError):
        process_job(services, job.id)
    stuck = services.jobs.get(job.id)
    assert (stuck.status, stuck.attempts) == (Status.PROCESSING, 1)
    clock.advance(121)  # the lease of the first attempt has run out
    done = process_job(services, job.id)
    assert (done.status, done.attempts) == (Status.DONE, 2)


def test_a_duplicate_delivery_during_processing_is_busy(services: Services, clock: Clock) -> None:
    job = submit_upload(services, JPEG)
    services.jobs.update(job.id, lambda j: j.start(now=clock()))
    clock.advance(5)
    with pytest.raises(Busy):
        process_job(services, job.id)


def test_concurrent_deliveries_process_once(services: Services) -> None:
    job = submit_upload(services, JPEG)
    renders: list[int] = []
    real_render = services.render

    def counting_render(data: bytes) -> Rendered:
        renders.append(1)
        return real_render(data)

    services.render = counting_render
    barrier = threading.Barrier(10)
    outcomes: list[str] = []

    def deliver() -> None:
        barrier.wait()
        try:
            outcomes.append(process_job(services, job.id).status.value)
        except Busy:
            outcomes.append("busy")

    threads = [threading.Thread(target=deliver) for _ in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(renders) == 1
    assert services.jobs.get(job.id).status is Status.DONE
    assert services.jobs.get(job.id).attempts == 1
    assert set(outcomes) <= {"busy", "DONE"}


# fail_job ----------------------------------------------------------------------------------------


def test_dead_letter_fails_a_pending_job_and_a_late_message_changes_nothing(services: Services) -> None:
    job = submit_upload(services, JPEG)
    failed = fail_job(services, job.id, "gave up after 5 attempts")
    assert failed is not None
    assert (failed.status, failed.error) == (Status.FAILED, "gave up after 5 attempts")
    assert process_job(services, job.id) == failed
    assert keys(services, "results/") == []


def test_a_late_dead_letter_does_not_undo_done(services: Services) -> None:
    job = submit_upload(services, JPEG)
    done = process_job(services, job.id)
    assert fail_job(services, job.id, "gave up after 5 attempts") == done


def test_dead_letter_for_an_unknown_job_is_ignored(services: Services) -> None:
    assert fail_job(services, "0" * 32, "gave up") is None


# helpers -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "extension", "expected"),
    [
        ("uploads/a.jpg", ".jpg", "results/a.jpg"),
        ("uploads/a.JPEG", ".jpg", "results/a.JPEG"),
        ("uploads/dir/a b.png", ".png", "results/dir/a b.png"),
        ("uploads/a.tif", ".png", "results/a.tif.png"),
        ("uploads/noext", ".png", "results/noext.png"),
        ("uploads/anim.gif", ".gif", "results/anim.gif"),
    ],
)
def test_result_key_for(source: str, extension: str, expected: str) -> None:
    assert result_key_for(source, extension) == expected


@pytest.mark.parametrize("payload", [{}, {"job_id": ""}, {"job_id": 7}, [], "job"], ids=str)
def test_malformed_queue_messages_are_bad_requests(payload: object) -> None:
    with pytest.raises(BadRequest):
        parse_job_message(payload)


def test_processing_records_the_sniffed_type_of_a_bucket_upload(services: Services) -> None:
    services.store.put("uploads/photo", encode(hopper(), "PNG"))  # no extension, no declared type
    job = accept_upload(services, "uploads/photo")
    assert job is not None
    assert job.content_type == "application/octet-stream" or job.content_type is None
    done = process_job(services, job.id)
    assert (done.content_type, done.result) == ("image/png", "results/photo.png")


@pytest.mark.parametrize("key", ["uploads/ctrl\x01\x7f.jpg", "uploads/..dots-lead.jpg", "uploads/a..b/c.jpg"])
def test_dots_and_control_characters_in_keys_stay_under_results(services: Services, key: str) -> None:
    services.store.put(key, JPEG)
    job = accept_upload(services, key)
    assert job is not None
    done = process_job(services, job.id)
    assert done.status is Status.DONE
    assert done.result == "results/" + key[len("uploads/") :]
    assert services.store.get(done.result).info.metadata["source"] == key


@pytest.mark.parametrize("event_first", [False, True])
def test_an_api_upload_costs_one_message_where_the_storage_event_sends_it(
    services: Services, event_first: bool
) -> None:
    """With upload events, submit_upload makes the record only; the event's accept_upload sends the message,
    whichever of the two comes first. Before, each API upload was enqueued twice."""
    services.upload_events = True
    queue = services.queue
    assert isinstance(queue, InMemoryTaskQueue)
    data = encode(hopper(), "JPEG")
    key = f"uploads/{hashlib.md5(data).hexdigest()[:12]}-photo.jpg"
    if event_first:  # the bucket event raced ahead of the API's own accept
        services.store.put(key, data, content_type="image/jpeg")
        accept_upload(services, key)
    job = submit_upload(services, data, filename="photo.jpg")
    if not event_first:
        assert queue.messages == [], "the API leaves the message to the storage event"
        accept_upload(services, job.source)
    assert queue.messages == [{"job_id": job.id}]
    assert services.jobs.get(job.id).status is Status.PENDING


def test_without_upload_events_the_api_upload_sends_its_own_message(services: Services) -> None:
    """Inline mode and stores without events: submit_upload enqueues, as nothing else will."""
    assert services.upload_events is False
    job = submit_upload(services, encode(hopper(), "PNG"), filename="p.png")
    assert services.queue.messages == [{"job_id": job.id}]  # type: ignore[attr-defined]


@pytest.mark.parametrize(("raw", "expected"), [("", True), ("1", True), ("yes", True), ("0", False), ("false", False)])
def test_upload_events_setting(raw: str, expected: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    from core import config

    monkeypatch.setenv("GRAYSCALE_UPLOAD_EVENTS", raw)
    assert config.upload_events() is expected
    monkeypatch.setenv("GRAYSCALE_UPLOAD_EVENTS", "maybe")
    with pytest.raises(ConfigError, match="GRAYSCALE_UPLOAD_EVENTS"):
        config.upload_events()
