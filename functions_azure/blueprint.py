"""The Azure functions (v2 programming model): each translates its trigger and calls one use case."""

from __future__ import annotations

import json
import logging
import urllib.parse
from typing import Any

import azure.functions as func
import azurefunctions.extensions.bindings.blob as blob

from core import http_api, logs, pipeline
from functions_azure.services import services
from functions_azure.settings import BATCH_QUEUE, CONNECTION, JOBS_QUEUE, MAX_DEQUEUE_COUNT, POISON_QUEUE

log = logging.getLogger("functions_azure")
bp = func.Blueprint()


@bp.function_name("on_upload")
@bp.blob_trigger(
    arg_name="client",
    path="%AZURE_STORAGE_CONTAINER%/uploads/{name}",
    connection=CONNECTION,
    source=func.BlobSource.EVENT_GRID,
)
def on_upload(client: blob.BlobClient) -> None:
    """A blob created under uploads/ (Event Grid) becomes a job and a message on grayscale-jobs.

    An SDK-type binding: the host hands over a client for the blob, not its bytes
    (``func.InputStream`` would make it download the whole upload first).
    """
    key = client.blob_name
    job = pipeline.accept_upload(services(), key)
    if job is not None:
        with logs.context(job_id=job.id):
            log.info("accepted %s as job %s (%s)", key, job.id, job.status.value)


@bp.function_name("process_job")
@bp.queue_trigger(arg_name="msg", queue_name=JOBS_QUEUE, connection=CONNECTION)
def process_job(msg: func.QueueMessage) -> None:
    """One grayscale-jobs message. Raising makes the host retry, then move it to the poison queue."""
    pipeline.handle_job_message(services(), queue_json(msg))


@bp.function_name("on_poison")
@bp.queue_trigger(arg_name="msg", queue_name=POISON_QUEUE, connection=CONNECTION)
def on_poison(msg: func.QueueMessage) -> None:
    """A jobs message the host gave up on: the job ends FAILED."""
    pipeline.handle_dead_letter(services(), queue_json(msg), f"gave up after {MAX_DEQUEUE_COUNT} attempts")


@bp.function_name("api_upload")
@bp.route(route="jobs", methods=["POST"], auth_level=func.AuthLevel.FUNCTION)
def api_upload(req: func.HttpRequest) -> func.HttpResponse:
    """POST {base}/jobs: a function key is required on Azure (not locally)."""
    return _http(req)


@bp.function_name("api_retry")
@bp.route(route="jobs/{id}/retry", methods=["POST"], auth_level=func.AuthLevel.FUNCTION)
def api_retry(req: func.HttpRequest) -> func.HttpResponse:
    """POST {base}/jobs/{id}/retry: run a FAILED job again (a function key is required on Azure)."""
    return _http(req)


@bp.function_name("api_migrations")
@bp.route(route="migrations", methods=["POST"], auth_level=func.AuthLevel.FUNCTION)
def api_migrations(req: func.HttpRequest) -> func.HttpResponse:
    """POST {base}/migrations: start a migration run (a function key is required on Azure)."""
    return _control_plane(req)


@bp.function_name("api_migration_check")
@bp.route(route="migrations/check", methods=["POST"], auth_level=func.AuthLevel.FUNCTION)
def api_migration_check(req: func.HttpRequest) -> func.HttpResponse:
    """POST {base}/migrations/check: the preflight (a function key is required on Azure)."""
    return _control_plane(req)


@bp.function_name("api_migration_list")
@bp.route(route="migrations", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
def api_migration_list(req: func.HttpRequest) -> func.HttpResponse:
    """GET {base}/migrations: the runs, as JSON or the page (a function key is required on Azure)."""
    return _control_plane(req)


@bp.function_name("api_migration_status")
@bp.route(route="migrations/{run_id}", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
def api_migration_status(req: func.HttpRequest) -> func.HttpResponse:
    """GET {base}/migrations/{run_id}: a run's progress (a function key is required on Azure)."""
    return _control_plane(req)


@bp.function_name("api_migration_step")
@bp.route(route="migrations/{run_id}/{step}", methods=["POST"], auth_level=func.AuthLevel.FUNCTION)
def api_migration_step(req: func.HttpRequest) -> func.HttpResponse:
    """POST {base}/migrations/{run_id}/cutover|abort|rollback|finish: 409 on Azure, whose identity may only read
    the bucket every step writes; the answer names the CLI command to run instead."""
    return _control_plane(req)


@bp.function_name("api_read")
@bp.route(route="{*path}", methods=["GET", "HEAD", "PUT", "PATCH", "DELETE"], auth_level=func.AuthLevel.ANONYMOUS)
def api_read(req: func.HttpRequest) -> func.HttpResponse:
    """The page, job status and results, anonymous as job ids are unguessable; nothing else, whatever the path.

    Only the pipeline's routes, by a method that writes nothing (no POST reaches it): ``GET /``, ``GET /jobs/{id}``
    and ``GET /jobs/{id}/result``, and the 404 or 405 of anything else. It routes on the host's ``path`` parameter,
    decoded once by the host and never again here, and no migration route is among its routes at all.
    """
    return _answer(http_api.handle(services, _request(req, "/" + req.route_params.get("path", ""))))


def _http(req: func.HttpRequest) -> func.HttpResponse:
    """A keyed pipeline route (upload, retry): the pipeline's routes only."""
    return _answer(http_api.handle(services, _request(req)))


def _control_plane(req: func.HttpRequest) -> func.HttpResponse:
    """A keyed migration route: the migration's routes only, never the pipeline's."""
    from migrate import http as migration_http  # on the first request, not when the host indexes the app

    routes = migration_http.routes(_batch_queue, writes_source=False)
    return _answer(http_api.handle(services, _request(req), routes, pipeline=False))


def _request(req: func.HttpRequest, path: str | None = None) -> http_api.Request:
    url = urllib.parse.urlsplit(req.url)
    if path is None:
        raw = url.path.split("/api", 1)[1] if "/api" in url.path else url.path
        path = urllib.parse.unquote(raw) or "/"
    return http_api.Request(
        method=req.method,
        path=path,
        headers=dict(req.headers),
        body=req.get_body() or b"",
        base_url=f"{url.scheme}://{url.netloc}/api",
        query=dict(req.params),
    )


def _answer(answer: http_api.Response) -> func.HttpResponse:
    return func.HttpResponse(answer.body, status_code=answer.status, headers=answer.headers)


def queue_json(msg: func.QueueMessage) -> object:
    """The body as JSON; None (which the use cases drop as malformed) when it is not."""
    try:
        return json.loads(msg.get_body())
    except ValueError:
        log.error("message %s is not JSON", msg.id)
        return None


def _batch_queue() -> Any:
    """The fan-out's queue; its client loads only when a migration is planned."""
    from core.clouds.azure_queue import AzureQueueTaskQueue

    return AzureQueueTaskQueue(BATCH_QUEUE)
