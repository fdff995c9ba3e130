"""The migration's functions-framework entry points on GCP: the fan-out's batches and their dead letters."""

from __future__ import annotations

import logging
import time
from typing import Any

from functions_gcp import framework
from functions_gcp.pipeline import gave_up, message_json

log = logging.getLogger("functions_gcp.migration")


@framework.http
def migrations(request: Any) -> Any:
    """The migration control plane (``/migrations`` routes only), a function of its own: deployed IAM-private
    whatever ``--public-api`` says, so the public upload API never reaches it."""
    from core import http_api
    from migrate import http as migration_http

    def no_pipeline() -> Any:
        raise AssertionError("the migration control plane serves no pipeline route")

    routes = migration_http.routes(_batch_queue)
    return framework.flask_response(
        http_api.handle(no_pipeline, framework.neutral_request(request), routes, pipeline=False)
    )


def _batch_queue() -> Any:
    """The fan-out's topic; the Pub/Sub client loads only when a migration is planned."""
    from core.clouds.pubsub import PubSubTaskQueue
    from migrate.fanout import BATCH_QUEUE

    return PubSubTaskQueue(BATCH_QUEUE)


@framework.cloud_event
def migrate_batch(event: Any) -> None:
    """One migrate-batches message: copy the batch to Azure Blob. Raising makes Pub/Sub redeliver."""
    from core.clouds.pubsub import PubSubTaskQueue
    from migrate import worker
    from migrate.fanout import BATCH_QUEUE

    worker.handle_message(message_json(event), PubSubTaskQueue(BATCH_QUEUE), message_id=event["id"])


@framework.cloud_event
def migrate_batch_dead_letter(event: Any) -> None:
    """A migrate-batches message that Pub/Sub gave up on: the batch is recorded failed in its run."""
    from core.clouds.pubsub import PubSubTaskQueue
    from migrate import worker
    from migrate.fanout import BATCH_QUEUE

    worker.handle_dead_letter(message_json(event), gave_up(event), PubSubTaskQueue(BATCH_QUEUE), message_id=event["id"])


@framework.cloud_event
def migrate_replicate(event: Any) -> None:
    """A bucket notification while a live migration runs: copy that object to Azure Blob (raising retries).

    Deployed, a notification of its own feeds it (topic ``migrate-replication``); locally it shares the
    processing notifications. Without ``_cutover/live.json`` in the bucket it does nothing.
    """
    from functions_gcp import events

    change = events.storage_change(event["type"], event.data)
    if change is None:
        return
    ends = _live_ends(change.bucket)
    if ends is None:
        return
    from core.clouds.gcs_source import details_from_resource
    from migrate import live

    known = details_from_resource(change.resource) if change.resource else None
    attempt = events.delivery_attempts(event.data)  # 1: no earlier attempt can have left a pending marker
    found = live.Change(change.key, change.change, change.generation, event["id"], known, attempt)
    action = live.replicate(found, *ends)
    if action not in ("ignored",):
        log.info("replicated %s: %s", change.key, action)


@framework.cloud_event
def migrate_replicate_dead_letter(event: Any) -> None:
    """A notification replication gave up on: recorded failed in the live run (and no longer pending)."""
    from functions_gcp import events
    from migrate import live

    change = events.storage_change(event["type"], event.data)  # the notification, as it was published
    if change is None:
        return
    ends = _live_ends(change.bucket)
    if ends is not None:
        live.fail(live.Change(change.key, change.change, change.generation, event["id"]), ends[3], ends[4],
                  gave_up(event))  # fmt: skip


def _live_ends(bucket: str) -> tuple[Any, ...] | None:
    """(bucket store, source, destination, run records, live run) while replication is on, else None."""
    from core.clouds.azure_blob import AzureBlobObjectStore
    from core.clouds.azure_destination import AzureBlobDestination
    from core.clouds.gcs import GcsObjectStore
    from core.clouds.gcs_source import GcsSource
    from migrate import live

    cached = _LIVE.get(bucket)
    if cached is not None and time.monotonic() - cached[0] < LIVE_CACHE_SECONDS:
        return cached[1]
    store = GcsObjectStore(bucket)
    run = live.live_run(store)
    if run is None:
        return None  # absence is never cached: replication starts with the first notification after plan --live
    ends = store, GcsSource(bucket), AzureBlobDestination(run.container), AzureBlobObjectStore(run.container), run
    _LIVE[bucket] = (time.monotonic(), ends)
    return ends


LIVE_CACHE_SECONDS = 30.0
"""A live run, once read, is kept this long per instance: one read of _cutover/live.json less per notification."""
_LIVE: dict[str, tuple[float, tuple[Any, ...]]] = {}
