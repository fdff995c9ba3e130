"""``make demo``: the pipeline on the real emulators, end to end.

It starts fake-gcs-server, Azurite and (where installed) Google's Pub/Sub
emulator, then pushes every image in ``samples/`` through ``core.pipeline``
with the real adapters, on both clouds. Half the images are written straight
to ``uploads/`` (as a user or the storage event would see them), half go
through the HTTP upload use case. The queue messages are taken from the real
queues and handed to ``process_job`` as the function triggers will do (the
function hosts themselves arrive with the GCP and Azure stacks).

It prints one line per job and a summary, stops every emulator, and exits 0
only when every image ended as expected: DONE, except ``truncated.jpg``,
which must end FAILED with a reason.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.clouds import pubsub
from core.clouds.azure_blob import AzureBlobObjectStore
from core.clouds.azure_queue import AzureQueueTaskQueue
from core.clouds.gcs import GcsObjectStore
from core.jobs import Job, Status
from core.memory import InMemoryTaskQueue
from core.pipeline import Services, accept_upload, parse_job_message, process_job, submit_upload
from devstack.emulators import ROOT, Azurite, EmulatorUnavailable, FakeGcs, PubSubEmulator

SAMPLES = ROOT / "samples"
EXPECTED_FAILURES = {"truncated.jpg"}
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".gif", ".webp", ".tif", ".tiff", ".bmp"}


@dataclass
class Row:
    cloud: str
    path: str
    name: str
    job: Job
    millis: float

    @property
    def as_expected(self) -> bool:
        want = Status.FAILED if self.name in EXPECTED_FAILURES else Status.DONE
        return self.job.status is want and (want is Status.DONE or bool(self.job.error))


def sample_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)


def run_cloud(cloud: str, services: Services, drain: Callable[[], list[Any]], files: list[Path]) -> list[Row]:
    """Upload every file (alternating bucket and HTTP paths), then process what the queue delivers."""
    submitted: dict[str, tuple[str, str]] = {}
    for index, path in enumerate(files):
        data = path.read_bytes()
        if index % 2 == 0:
            key = f"uploads/{path.name}"
            services.store.put(key, data)  # a plain upload: the storage event does the rest
            job = accept_upload(services, key)
            via = "bucket"
        else:
            job = submit_upload(services, data, filename=path.name)
            via = "http"
        assert job is not None
        submitted[job.id] = (via, path.name)

    rows: dict[str, Row] = {}
    deadline = time.monotonic() + 60
    while len(rows) < len(submitted) and time.monotonic() < deadline:
        for payload in drain():
            job_id = parse_job_message(payload)
            start = time.perf_counter()
            job = process_job(services, job_id)
            via, name = submitted[job_id]
            rows.setdefault(job_id, Row(cloud, via, name, job, (time.perf_counter() - start) * 1000))
    missing = set(submitted) - set(rows)
    if missing:
        raise RuntimeError(f"{cloud}: no queue message arrived for {len(missing)} job(s) within 60 s")
    return sorted(rows.values(), key=lambda r: r.name)


@contextlib.contextmanager
def environment(values: dict[str, str]) -> Iterator[None]:
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, old in saved.items():
            if old is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = old


def gcp(files: list[Path], stack: contextlib.ExitStack) -> tuple[list[Row], str]:
    try:
        emulator = stack.enter_context(PubSubEmulator())
    except EmulatorUnavailable as exc:
        emulator = None
        print(f"note: Pub/Sub emulator absent ({exc}); GCP jobs go through an in-memory queue")
    gcs = stack.enter_context(FakeGcs())
    env = {**gcs.env(), "GOOGLE_CLOUD_PROJECT": "demo", **(emulator.env() if emulator else {})}
    stack.enter_context(environment(env))
    store = GcsObjectStore(f"demo-{uuid.uuid4().hex[:8]}")
    store.create_bucket()
    if emulator:
        topic = pubsub.ensure_topic("grayscale-jobs")
        subscription = pubsub.ensure_pull_subscription("grayscale-jobs-demo", topic)
        services = Services.over(store, pubsub.PubSubTaskQueue(topic))
        rows = run_cloud("gcp", services, lambda: pubsub.pull_payloads(subscription), files)
        return rows, f"fake-gcs-server {gcs.url}, Pub/Sub emulator {emulator.host}"
    memory = InMemoryTaskQueue()
    rows = run_cloud("gcp", Services.over(store, memory), memory.drain, files)
    return rows, f"fake-gcs-server {gcs.url}, in-memory queue"


def azure(files: list[Path], stack: contextlib.ExitStack) -> tuple[list[Row], str]:
    azurite = stack.enter_context(Azurite())
    stack.enter_context(environment(azurite.env()))
    store = AzureBlobObjectStore(f"demo-{uuid.uuid4().hex[:8]}")
    store.create_container()
    queue = AzureQueueTaskQueue("grayscale-jobs")
    queue.create_queue()

    def drain() -> list[Any]:
        taken = queue.receive(visibility_timeout=30)
        for message in taken:
            queue.delete(message)  # deleted once handed over; process_job is idempotent
        return [m.payload for m in taken]

    rows = run_cloud("azure", Services.over(store, queue), drain, files)
    return rows, f"Azurite blob :{azurite.blob_port}, queue :{azurite.queue_port}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run the pipeline on local emulators, end to end.")
    parser.add_argument("--samples", type=Path, default=SAMPLES, help="folder of images (default: samples/)")
    args = parser.parse_args(argv)
    files = sample_files(args.samples)
    if not files:
        print(f"no images in {args.samples}", file=sys.stderr)
        return 2

    started = time.perf_counter()
    rows: list[Row] = []
    for cloud in (gcp, azure):
        with contextlib.ExitStack() as stack:  # stops this cloud's emulators on the way out
            cloud_rows, where = cloud(files, stack)
        print(f"\n{cloud.__name__}: {where}")
        print(f"  {'via':<7} {'file':<18} {'type':<11} {'status':<7} {'ms':>6}  result or error")
        for row in cloud_rows:
            detail = row.job.result if row.job.status is Status.DONE else row.job.error
            mark = "" if row.as_expected else "   <-- unexpected"
            kind = row.job.content_type or "?"
            print(
                f"  {row.path:<7} {row.name:<18} {kind:<11} {row.job.status.value:<7} {row.millis:6.1f}  {detail}{mark}"
            )
        rows += cloud_rows

    print("\nsummary")
    ok = True
    for cloud in ("gcp", "azure"):
        mine = [r for r in rows if r.cloud == cloud]
        done = sum(r.job.status is Status.DONE for r in mine)
        failed = sum(r.job.status is Status.FAILED for r in mine)
        good = all(r.as_expected for r in mine) and len(mine) == len(files)
        ok &= good
        verdict = "as expected" if good else "NOT as expected"
        print(f"  {cloud:<6} {len(mine)} jobs: {done} DONE, {failed} FAILED ({verdict})")
    print(f"  total  {time.perf_counter() - started:.1f} s; emulators stopped")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
