"""The services of the GCP functions, built lazily once per process.

Configuration (read on first use): ``GCS_BUCKET``; ``JOBS_TOPIC`` (default
``grayscale-jobs``); ``GOOGLE_CLOUD_PROJECT``; ``GRAYSCALE_PROCESS_INLINE=1``
to process in-process instead of publishing (a local stack without Pub/Sub).
"""

from __future__ import annotations

import os
import threading

from core import config, logs
from core.clouds.gcs import GcsObjectStore
from core.clouds.pubsub import PubSubTaskQueue
from core.memory import CallbackTaskQueue
from core.pipeline import Services, parse_job_message, process_job

JOBS_TOPIC_VAR = "JOBS_TOPIC"
DEFAULT_JOBS_TOPIC = "grayscale-jobs"
INLINE_VAR = "GRAYSCALE_PROCESS_INLINE"

_lock = threading.Lock()
_services: Services | None = None


def services() -> Services:
    """This process's services, built on first call and reused by warm invocations."""
    global _services
    with _lock:
        if _services is None:
            logs.configure()
            _services = build()
        return _services


def build() -> Services:
    """Services over the configured bucket and jobs topic."""
    store = GcsObjectStore(config.require("GCS_BUCKET"))
    if os.environ.get(INLINE_VAR, "").strip().lower() in ("1", "true", "yes"):
        built = Services.over(store, CallbackTaskQueue(lambda payload: None))
        built.queue = CallbackTaskQueue(lambda payload: process_job(built, parse_job_message(payload)))
        return built
    topic = os.environ.get(JOBS_TOPIC_VAR, "").strip() or DEFAULT_JOBS_TOPIC
    return Services.over(store, PubSubTaskQueue(topic))


def use(replacement: Services | None) -> None:
    """Replace this process's services (tests), or forget them with None."""
    global _services
    with _lock:
        _services = replacement
