"""The local GCP chain, every part a real server on 127.0.0.1.

    upload to fake-gcs-server ──OBJECT_FINALIZE──▶ topic gcs-notifications
        ──push──▶ functions-framework on_upload ──publish──▶ topic grayscale-jobs
        ──push──▶ functions-framework process_job ──▶ results/ and jobs/ in fake-gcs
    grayscale-jobs has a dead-letter policy (5 attempts) ──▶ topic grayscale-jobs-dead
        ──push──▶ functions-framework on_dead_letter
    functions-framework api on :8080 (or a free port): the HTTP API and page
    topic migrate-batches --push--> functions-framework migrate_batch (the migration's fan-out on GCP)
        with a dead-letter policy (5 attempts) --> topic migrate-batches-dead
        --push--> functions-framework migrate_batch_dead_letter (the batch is recorded failed)

Each push is ``devstack.pubsub_push``: it reads the emulator's subscriptions and
posts to the functions at once and in parallel, as Pub/Sub does (the emulator's
own push is serial and polls every 100 ms).

Without Google's Pub/Sub emulator only the API runs, with
``GRAYSCALE_PROCESS_INLINE=1``: an HTTP upload is processed in-process, and a
direct upload to the bucket triggers nothing (fake-gcs-server can only notify
through Pub/Sub).
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from core import names
from core.clouds import pubsub, replication_feed
from core.clouds.gcs import GcsObjectStore
from devstack.emulators import (
    HOST,
    ROOT,
    EmulatorUnavailable,
    FakeGcs,
    PubSubEmulator,
    _Process,
    free_port,
    preferred_port,
)
from devstack.environment import Stack, environment
from devstack.pubsub_push import PubSubPush, PushTarget

PROJECT = "local"
NOTIFICATIONS_TOPIC = names.NOTIFICATIONS_TOPIC
JOBS_TOPIC = names.JOBS
DEAD_LETTER_TOPIC = names.JOBS_DEAD_LETTER_TOPIC
BATCH_TOPIC = names.BATCHES
BATCH_DEAD_LETTER_TOPIC = names.BATCHES_DEAD_LETTER_TOPIC
REPLICATION_DEAD_LETTER_TOPIC = names.REPLICATION_DEAD_LETTER_TOPIC
MAX_DELIVERY_ATTEMPTS = 5
SUBSCRIPTIONS = (  # (push subscription, topic, function, its dead-letter topic)
    ("on-upload", NOTIFICATIONS_TOPIC, "on_upload", None),
    ("process-job", JOBS_TOPIC, "process_job", DEAD_LETTER_TOPIC),
    ("on-dead-letter", DEAD_LETTER_TOPIC, "on_dead_letter", None),
    ("migrate-batch", BATCH_TOPIC, "migrate_batch", BATCH_DEAD_LETTER_TOPIC),
    ("migrate-batch-dead-letter", BATCH_DEAD_LETTER_TOPIC, "migrate_batch_dead_letter", None),
    ("migrate-replicate-dead-letter", REPLICATION_DEAD_LETTER_TOPIC, "migrate_replicate_dead_letter", None),
)
# Live replication's feed: deployed, a bucket notification of its own (topic migrate-replication); locally
# fake-gcs-server publishes to one topic, so it is a subscription on the processing notifications. Either way
# `plan --live` makes it and `finish` removes it (core.clouds.replication_feed); the forwarder pushes it while
# it exists.
REPLICATION_FEED = (
    replication_feed.SUBSCRIPTION,
    NOTIFICATIONS_TOPIC,
    "migrate_replicate",
    REPLICATION_DEAD_LETTER_TOPIC,
)
API_PORT = 8080


class FunctionsFramework(_Process):
    """``functions-framework --target T`` serving one entry point of ``main.py``."""

    grace = 2.0  # gunicorn waits 30 s for a request in flight; an unfinished render is abandoned (its lease)

    def __init__(self, target: str, signature: str, port: int | None = None, *, workdir: Path | None = None) -> None:
        self.name = f"ff-{target}"
        super().__init__(workdir)
        self.target = target
        self.signature = signature
        self.port = port or free_port()

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def concurrency(self) -> int:
        """Requests served at once, as deployed (deploy/gcp.py --concurrency): gunicorn's THREADS."""
        return {"api": 16, "migrations": 16, "migrate_batch": 2, "migrate_replicate": 16}.get(self.target, 8)

    def launch(self, env: dict[str, str]) -> None:
        argv = [
            sys.executable, "-m", "functions_framework",
            "--target", self.target,
            "--source", str(ROOT / "main.py"),
            "--signature-type", self.signature,
            "--host", HOST,
            "--port", str(self.port),
        ]  # fmt: skip
        self._spawn(argv, self.port, env={"THREADS": str(self.concurrency), **env, "PYTHONPATH": str(ROOT)}, wait=False)

    def start(self) -> None:  # pragma: no cover - GcpStack launches these with their environment
        raise NotImplementedError("use launch(env)")


@dataclass
class GcpStack(Stack):
    """Start with ``with GcpStack() as stack:``; everything stops on exit."""

    api_port: int | None = None
    bucket: str = field(default_factory=lambda: f"gray-{uuid.uuid4().hex[:8]}")
    use_pubsub: bool = True
    persistent: bool = False
    """Keep fake-gcs-server's objects on disk, so that ``self.gcs.restart()`` loses nothing."""
    extra_env: dict[str, str] = field(default_factory=dict)
    pubsub: PubSubEmulator | None = None
    gcs: FakeGcs | None = None
    functions: dict[str, FunctionsFramework] = field(default_factory=dict)
    push: PubSubPush | None = None
    note: str = ""
    _stack: contextlib.ExitStack = field(default_factory=contextlib.ExitStack)

    @property
    def api_url(self) -> str:
        return self.functions["api"].url

    @property
    def migrations_url(self) -> str:
        """The migration control plane (``migrations``), apart from the public API."""
        return self.functions["migrations"].url

    def env(self) -> dict[str, str]:
        """The environment the functions run with (and that clients of this stack need)."""
        assert self.gcs is not None
        env = {**self.gcs.env(), "GOOGLE_CLOUD_PROJECT": PROJECT, "GCS_BUCKET": self.bucket, "JOBS_TOPIC": JOBS_TOPIC}
        if self.pubsub is not None:
            env.update(self.pubsub.env())
        else:
            env["GRAYSCALE_PROCESS_INLINE"] = "1"
        return {**env, **self.extra_env}

    def store(self) -> GcsObjectStore:
        """A store on this stack's bucket (the caller's environment must point at the emulator)."""
        return GcsObjectStore(self.bucket)

    def start(self) -> None:
        if self.use_pubsub:
            try:
                self.pubsub = self._stack.enter_context(PubSubEmulator())
            except EmulatorUnavailable as exc:
                self.note = f"Pub/Sub emulator absent, so the API processes uploads in-process: {exc}"
        else:
            self.note = "Pub/Sub switched off, so the API processes uploads in-process"
        with environment(self.pubsub.env() if self.pubsub else {}):
            if self.pubsub:
                topics = (NOTIFICATIONS_TOPIC, JOBS_TOPIC, DEAD_LETTER_TOPIC, BATCH_TOPIC, BATCH_DEAD_LETTER_TOPIC,
                          REPLICATION_DEAD_LETTER_TOPIC)  # fmt: skip
                for topic in topics:
                    pubsub.ensure_topic(topic, PROJECT)
            topic = {"pubsub_project": PROJECT, "pubsub_topic": NOTIFICATIONS_TOPIC} if self.pubsub else {}
            self.gcs = FakeGcs(persistent=self.persistent, **topic)
            self._stack.enter_context(self.gcs)
            with environment({**self.gcs.env(), "GOOGLE_CLOUD_PROJECT": PROJECT}):
                self.store().create_bucket()
            self._start_functions()
            if self.pubsub:
                self._subscribe()

    def _start_functions(self) -> None:
        api_port = self.api_port
        if api_port is None:
            api_port, busy = preferred_port(API_PORT, "the GCP API")
            self.note = "; ".join(filter(None, [self.note, busy]))
        wanted = [("api", "http", api_port), ("migrations", "http", None)]
        if self.pubsub:
            wanted += [(target, "cloudevent", None) for _, _, target, _ in (*SUBSCRIPTIONS, REPLICATION_FEED)]
        env = self.env()
        self._stack.callback(self._stop_functions)
        for target, signature, port in wanted:
            host = FunctionsFramework(target, signature, port)
            host.launch(env)
            self.functions[target] = host
        for host in self.functions.values():
            host.wait_ready(host.port)
        _get(self.api_url + "/")  # the API answers

    def _stop_functions(self) -> None:
        """Stop every function at once: each has ``grace`` seconds, not the sum of them all."""
        with ThreadPoolExecutor(max_workers=max(1, len(self.functions))) as pool:
            list(pool.map(lambda host: host.stop(), self.functions.values()))

    def _subscribe(self) -> None:
        """Subscribe each function to its topic; ``devstack.pubsub_push`` pushes, as Pub/Sub does."""
        assert self.pubsub is not None
        targets = []
        with environment({**self.pubsub.env(), "GOOGLE_CLOUD_PROJECT": PROJECT}):
            for name, topic, target, dead_letter_topic in SUBSCRIPTIONS:
                # A batch takes longer than a job: Pub/Sub waits this long before it redelivers.
                ack_deadline = 600 if target == "migrate_batch" else 60
                path = pubsub.ensure_subscription(
                    name,
                    topic,
                    project=PROJECT,
                    dead_letter_topic=dead_letter_topic,
                    max_delivery_attempts=MAX_DELIVERY_ATTEMPTS,
                    ack_deadline_seconds=ack_deadline,
                )
                # Posted as Eventarc posts to a function deployed with --trigger-topic: a CloudEvent.
                host = self.functions[target]
                targets.append(PushTarget(path, host.url, host.concurrency, ack_deadline, bool(dead_letter_topic),
                                          topic=pubsub.topic_path(topic, PROJECT)))  # fmt: skip
            name, topic, target, _ = REPLICATION_FEED
            host = self.functions[target]
            feed = PushTarget(pubsub.subscription_path(name, PROJECT), host.url, host.concurrency, 60, True,
                              topic=pubsub.topic_path(topic, PROJECT))  # fmt: skip
            self.push = self._stack.enter_context(PubSubPush(targets, watched=[feed]))

    def kill(self, target: str) -> None:
        """SIGKILL one function's processes, as a preempted instance dies."""
        host = self.functions[target]
        if host.proc is not None:
            os.killpg(host.proc.pid, signal.SIGKILL)
            host.proc.wait()

    def restart(self, target: str) -> None:
        """Start one function again on its port (a new instance)."""
        host = self.functions[target]
        host.stop()
        host.launch(self.env())
        host.wait_ready(host.port)

    def describe(self) -> dict[str, object]:
        """The GCP half of ``.dev/stack.json``."""
        assert self.gcs is not None
        return {
            "gcp_api": self.api_url,
            "gcp_migrations_api": self.migrations_url,
            "gcs_endpoint": self.gcs.url,
            "gcs_bucket": self.bucket,
            "pubsub_emulator": self.pubsub.host if self.pubsub else None,
        }


def _get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=10) as response:
        return bytes(response.read())
