"""functions-framework entry points: each translates its trigger and calls one use case."""

from __future__ import annotations

import logging
from typing import Any

import flask
import functions_framework
from cloudevents.http import CloudEvent

from core import http_api, logs, pipeline
from core.clouds.pubsub import PubSubTaskQueue
from core.errors import BadRequest, NotFound
from functions_gcp import events
from functions_gcp.services import services
from migrate import http as migration_http
from migrate import worker
from migrate.fanout import BATCH_QUEUE

log = logging.getLogger("functions_gcp")
MIGRATION_ROUTES = migration_http.routes(lambda: PubSubTaskQueue(BATCH_QUEUE))


@functions_framework.cloud_event
def on_upload(event: CloudEvent) -> None:
    """A finalized object (Eventarc or a bucket notification on Pub/Sub) becomes a job."""
    with logs.context(trace=logs.trace_from_header(event.get("traceparent"))):
        try:
            upload = events.storage_object(event["type"], event.data)
        except BadRequest as exc:
            log.warning("ignored a malformed storage event %s: %s", event["id"], exc)
            return
        svc = services()
        if upload is None or upload.bucket != getattr(svc.store, "bucket_name", upload.bucket):
            return
        job = pipeline.accept_upload(svc, upload.key, md5=upload.md5, content_type=upload.content_type)
        if job is not None:
            logs.set_job(job.id)
            log.info("accepted %s as job %s (%s)", upload.key, job.id, job.status.value)


@functions_framework.cloud_event
def process_job(event: CloudEvent) -> None:
    """One jobs-topic message: render the job. Raising makes Pub/Sub redeliver."""
    with logs.context(trace=logs.trace_from_header(event.get("traceparent"))):
        pipeline.handle_job_message(services(), _json(event))


@functions_framework.cloud_event
def on_dead_letter(event: CloudEvent) -> None:
    """A jobs message that Pub/Sub gave up on: the job ends FAILED."""
    with logs.context(trace=logs.trace_from_header(event.get("traceparent"))):
        pipeline.handle_dead_letter(services(), _json(event), _gave_up(event))


def _json(event: CloudEvent) -> dict[str, Any] | None:
    """The JSON object the Pub/Sub message carries; None (which the use cases drop as malformed) when it has none."""
    try:
        return events.message_json(event["type"], event.data)
    except BadRequest as exc:
        log.error("event %s carries no JSON message: %s", event["id"], exc)
        return None


def _gave_up(event: CloudEvent) -> str:
    attempts = events.delivery_attempts(event.data)
    return f"gave up after {attempts} attempts" if attempts else "gave up after repeated failures"


@functions_framework.http
def api(request: flask.Request) -> flask.Response:
    """The HTTP API and the upload page (core.http_api), adapted from Flask."""
    with logs.context(trace=logs.trace_from_header(request.headers.get("X-Cloud-Trace-Context"))):
        answer = http_api.handle(
            services(),
            http_api.Request(
                method=request.method,
                path=request.path,
                headers=dict(request.headers),
                body=request.stream,
                base_url=request.url_root.rstrip("/"),
                query=request.args.to_dict(),
            ),
            MIGRATION_ROUTES,
        )
        return flask.Response(answer.body, status=answer.status, headers=answer.headers)


@functions_framework.cloud_event
def migrate_batch(event: CloudEvent) -> None:
    """One migrate-batches message: copy the batch to Azure Blob. Raising makes Pub/Sub redeliver."""
    payload = _json(event)
    try:
        state = worker.handle(payload, PubSubTaskQueue(BATCH_QUEUE))
    except (BadRequest, NotFound) as exc:
        log.error("dropped migration message %s: %s", event["id"], exc)
        return
    log.info("batch %s of run %s: %s", state["batch"], (payload or {}).get("run_id"), state["state"])


@functions_framework.cloud_event
def migrate_batch_dead_letter(event: CloudEvent) -> None:
    """A migrate-batches message that Pub/Sub gave up on: the batch is recorded failed in its run."""
    try:
        worker.handle_poison(_json(event), _gave_up(event))
    except BadRequest as exc:
        log.error("dropped a malformed migration dead letter %s: %s", event["id"], exc)
