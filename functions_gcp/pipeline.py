"""The pipeline's functions-framework entry points: each translates its trigger and calls one use case.

Only what a target uses is imported: the SDKs load when ``services()`` is first
built (and Pub/Sub only when something publishes), the migration routes of
the API on its first request (the fan-out's queue client only when a run is planned).
"""

from __future__ import annotations

import logging
from typing import Any

from core import logs, pipeline
from core.errors import BadRequest
from functions_gcp import events, framework
from functions_gcp.services import services

log = logging.getLogger("functions_gcp")


@framework.cloud_event
def on_upload(event: Any) -> None:
    """A finalized object (Eventarc or a bucket notification on Pub/Sub) becomes a job."""
    try:
        upload = events.storage_object(event["type"], event.data)
    except BadRequest as exc:
        log.warning("ignored a malformed storage event %s: %s", event["id"], exc)
        return
    svc = services()
    if upload is None or upload.bucket != getattr(svc.store, "bucket_name", upload.bucket):
        return
    job = pipeline.accept_upload(svc, upload.key, md5=upload.md5, content_type=upload.content_type,
                                 created=upload.created)  # fmt: skip
    if job is not None:
        logs.set_job(job.id)
        log.info("accepted %s as job %s (%s)", upload.key, job.id, job.status.value)


@framework.cloud_event
def process_job(event: Any) -> None:
    """One jobs-topic message: render the job. Raising makes Pub/Sub redeliver."""
    pipeline.handle_job_message(services(), message_json(event))


@framework.cloud_event
def on_dead_letter(event: Any) -> None:
    """A jobs message that Pub/Sub gave up on: the job ends FAILED."""
    pipeline.handle_dead_letter(services(), message_json(event), gave_up(event))


def message_json(event: Any) -> dict[str, Any] | None:
    """The JSON object the Pub/Sub message carries; None (which the use cases drop as malformed) when it has none."""
    try:
        return events.message_json(event["type"], event.data)
    except BadRequest as exc:
        log.error("event %s carries no JSON message: %s", event["id"], exc)
        return None


def gave_up(event: Any) -> str:
    attempts = events.delivery_attempts(event.data)
    return f"gave up after {attempts} attempts" if attempts else "gave up after repeated failures"


@framework.http
def api(request: Any) -> Any:
    """The HTTP API and the upload page (core.http_api), adapted from Flask. No migration route: those are
    ``migrations``', a function of its own that is never public."""
    from core import http_api

    return framework.flask_response(http_api.handle(services, framework.neutral_request(request)))
