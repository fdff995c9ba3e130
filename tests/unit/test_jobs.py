"""core.jobs: the record, its transitions and its id."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from core.errors import Busy, CoreError, TransientError
from core.jobs import Job, Status, job_id_for

T0 = datetime(2026, 11, 27, 6, 0, 0, tzinfo=UTC)


def pending() -> Job:
    return Job.new(job_id_for("uploads/cat.jpg", "ab" * 16), "uploads/cat.jpg", "image/jpeg", now=T0)


def test_id_is_stable_and_depends_on_key_and_content() -> None:
    md5 = "0123456789abcdef0123456789abcdef"
    assert job_id_for("uploads/a.jpg", md5) == job_id_for("uploads/a.jpg", md5.upper())
    assert job_id_for("uploads/a.jpg", md5) != job_id_for("uploads/b.jpg", md5)
    assert job_id_for("uploads/a.jpg", md5) != job_id_for("uploads/a.jpg", "f" * 32)
    assert len(job_id_for("uploads/a.jpg", md5)) == 32


def test_new_job_is_pending_with_no_attempts() -> None:
    job = pending()
    assert (job.status, job.attempts, job.result, job.error) == (Status.PENDING, 0, None, None)
    assert job.created == job.updated == T0


def test_happy_path_transitions() -> None:
    started = pending().start(now=T0 + timedelta(seconds=1))
    assert (started.status, started.attempts) == (Status.PROCESSING, 1)
    done = started.complete("results/cat.jpg", now=T0 + timedelta(seconds=2))
    assert (done.status, done.result, done.updated) == (Status.DONE, "results/cat.jpg", T0 + timedelta(seconds=2))


def test_done_is_terminal_and_repeats_are_no_ops() -> None:
    done = pending().start().complete("results/cat.jpg")
    assert done.start() is done
    assert done.complete("results/other.jpg") is done
    assert done.fail("late dead letter") is done


def test_failed_is_terminal() -> None:
    failed = pending().fail("gave up after 5 attempts")
    assert failed.status is Status.FAILED
    assert failed.start() is failed
    assert failed.complete("results/x.jpg") is failed


def test_each_retry_increments_attempts() -> None:
    job = pending()
    for expected in (1, 2, 3):
        job = job.start(now=T0 + timedelta(minutes=10 * expected), lease=timedelta(minutes=5))
        assert job.attempts == expected


def test_a_live_lease_makes_a_duplicate_busy() -> None:
    started = pending().start(now=T0)
    with pytest.raises(Busy) as err:
        started.start(now=T0 + timedelta(seconds=30), lease=timedelta(seconds=120))
    assert isinstance(err.value, TransientError)
    retried = started.start(now=T0 + timedelta(seconds=121), lease=timedelta(seconds=120))
    assert retried.attempts == 2


def test_json_round_trip_with_iso_utc_times() -> None:
    done = pending().start(now=T0).complete
    job = done("results/cat.jpg", input_format="heic", output_format="jpeg", now=T0 + timedelta(milliseconds=1500))
    record = json.loads(job.to_json())
    assert record == {
        "id": job.id,
        "status": "DONE",
        "source": "uploads/cat.jpg",
        "result": "results/cat.jpg",
        "content_type": "image/jpeg",
        "input_format": "heic",
        "output_format": "jpeg",
        "error": None,
        "attempts": 1,
        "created": "2026-11-27T06:00:00.000Z",
        "updated": "2026-11-27T06:00:01.500Z",
    }
    assert Job.from_json(job.to_json()) == job


def test_a_record_from_before_the_format_fields_reads_as_unknown_formats() -> None:
    """Records written before ``input_format``/``output_format`` existed (and migrated ones) still load."""
    old = {k: v for k, v in pending().to_dict().items() if k not in ("input_format", "output_format")}
    job = Job.from_dict(old)
    assert (job.input_format, job.output_format) == (None, None)
    assert job.retry() is job  # a PENDING record is not retried


def test_a_retry_forgets_the_output_format_and_keeps_the_input_format() -> None:
    job = pending().start(now=T0).complete("results/cat.jpg", input_format="jpeg", output_format="jpeg")
    failed = replace(job, status=Status.FAILED, result=None)
    again = failed.retry(now=T0)
    assert (again.input_format, again.output_format, again.status) == ("jpeg", None, Status.PENDING)


@pytest.mark.parametrize("data", [b"", b"[]", b"{}", b'{"id": "x", "status": "WEIRD"}', b"not json"], ids=str)
def test_malformed_records_raise_core_error(data: bytes) -> None:
    with pytest.raises(CoreError):
        Job.from_json(data)


def test_a_failed_jobs_reason_names_no_account_id_or_secret() -> None:
    """A job record is served anonymously: the reason keeps its sense, not the deployment's identities."""
    job = Job.new("0" * 32, "uploads/a.jpg", "image/jpeg").fail(
        "gray-runtime@proj-1.iam.gserviceaccount.com may not read https://a.blob.core.windows.net/c/b?sv=1&sig=abc "
        "(tenant 11111111-2222-3333-4444-555555555555)"
    )
    assert job.error is not None and "may not read" in job.error
    for leaked in ("gray-runtime@", "sig=abc", "11111111-2222"):
        assert leaked not in job.error
