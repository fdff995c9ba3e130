"""The services of the GCP functions, built lazily once per process.

Configuration (read on first use): ``GCS_BUCKET``; ``JOBS_TOPIC`` (default
``grayscale-jobs``); ``GOOGLE_CLOUD_PROJECT``; ``GRAYSCALE_PROCESS_INLINE=1``
to process in-process instead of publishing (a local stack without Pub/Sub).
"""

from __future__ import annotations

import os
from typing import Any

from core import config, logs, names
from core.memory import CallbackTaskQueue
from core.pipeline import LazyServices, LazyTaskQueue, Services, parse_job_message, process_job

JOBS_TOPIC_VAR = "JOBS_TOPIC"
DEFAULT_JOBS_TOPIC = names.JOBS
INLINE_VAR = "GRAYSCALE_PROCESS_INLINE"


def build() -> Services:
    """Services over the configured bucket and jobs topic; the Pub/Sub client loads on the first publish."""
    from core.clouds.gcs import GcsObjectStore

    store = GcsObjectStore(config.require("GCS_BUCKET"))
    if os.environ.get(INLINE_VAR, "").strip().lower() in ("1", "true", "yes"):
        # One Services, whose queue processes each message at once on that same Services.
        inline = Services.over(store, CallbackTaskQueue(lambda msg: process_job(inline, parse_job_message(msg))))
        return inline
    topic = os.environ.get(JOBS_TOPIC_VAR, "").strip() or DEFAULT_JOBS_TOPIC
    built = Services.over(store, LazyTaskQueue(lambda: _pubsub(topic)))
    built.upload_events = config.upload_events()  # the bucket notification (or Eventarc) sends the message
    return built


def _pubsub(topic: str) -> Any:
    from core.clouds.pubsub import PubSubTaskQueue

    return PubSubTaskQueue(topic)


services = LazyServices(build, on_first_use=logs.configure)
"""This process's services: ``services()`` builds them on first call; ``services.use(fake)`` in tests."""
use = services.use
