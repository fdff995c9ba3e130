"""Duplicated events and concurrent uploads on both clouds' local stacks; each test prints its figure."""

from __future__ import annotations

import hashlib
import io
import statistics
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from PIL import Image

from core.jobs import JsonJobStore, job_id_for
from devstack.azure import AzureStack
from devstack.gcp import GcpStack
from tests.helper import http_json, renders, upload_event, wait_for_job

pytestmark = [pytest.mark.reliability, pytest.mark.emulator]

UPLOADS = 50
POSTS = 200


def tiny_png(seed: int) -> bytes:
    """A distinct small image per seed."""
    im = Image.new("RGB", (24, 16), ((seed * 37) % 256, (seed * 91) % 256, (seed * 53) % 256))
    im.putpixel((seed % 24, (seed // 24) % 16), (255 - (seed % 256), 0, 0))
    buf = io.BytesIO()
    im.save(buf, "PNG")
    return buf.getvalue()


def deliver_three_times(stack: GcpStack | AzureStack, cloud: str) -> dict[str, int]:
    store, jobs = stack.store(), JsonJobStore(stack.store())
    prefix = f"uploads/dup-{time.monotonic_ns()}"
    keys = {f"{prefix}-{i:03d}.png": tiny_png(1000 + i) for i in range(UPLOADS)}
    ids = {key: job_id_for(key, hashlib.md5(data).hexdigest()) for key, data in keys.items()}

    def upload_and_duplicate(key: str) -> None:
        data = keys[key]
        info = store.put(key, data, content_type="image/png")  # delivery 1: the platform's own event
        barrier = threading.Barrier(2)

        def again() -> None:
            barrier.wait()
            # The platform's event, twice more, at once: the notification on GCP, BlobCreated on Azure.
            upload_event(stack, key, info)

        threads = [threading.Thread(target=again) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

    with ThreadPoolExecutor(16) as pool:
        list(pool.map(upload_and_duplicate, keys))
    for job_id in ids.values():
        wait_for_job(stack.api_url, job_id, timeout=120)
    time.sleep(3)  # let the duplicates land
    records = [jobs.get(job_id) for job_id in ids.values()]
    results = [i.key for i in store.list(prefix.replace("uploads/", "results/"))]
    rendered = renders(stack)
    return {
        "uploads": UPLOADS,
        "done": sum(r.status.value == "DONE" for r in records),
        "results": len(results),
        "max_attempts": max(r.attempts for r in records),
        "renders": sorted({rendered.get(job_id, 0) for job_id in ids.values()}),  # [1]: each rendered once
    }


@pytest.mark.parametrize("cloud", ["gcp", "azure"])
def test_each_upload_delivered_three_times_gives_one_result(request: pytest.FixtureRequest, cloud: str) -> None:
    stack = request.getfixturevalue(f"{cloud}_stack")
    figures = deliver_three_times(stack, cloud)
    print(f"\nFIGURE duplicates {cloud}: {figures['uploads']} uploads x 3 deliveries -> "
          f"{figures['results']} results, {figures['done']} DONE, max attempts {figures['max_attempts']}")  # fmt: skip
    assert figures == {"uploads": UPLOADS, "done": UPLOADS, "results": UPLOADS, "max_attempts": 1, "renders": [1]}


@pytest.mark.parametrize("cloud", ["gcp", "azure"])
def test_concurrent_posts_give_distinct_records_all_done(request: pytest.FixtureRequest, cloud: str) -> None:
    stack = request.getfixturevalue(f"{cloud}_stack")
    started = time.monotonic()

    def post(seed: int) -> tuple[int, str, float]:
        began = time.monotonic()
        status, job = http_json("POST", f"{stack.api_url}/jobs", tiny_png(seed), {"Content-Type": "image/png"})
        return status, job.get("id", ""), time.monotonic() - began

    with ThreadPoolExecutor(32) as pool:
        answers = list(
            pool.map(post, range(5000 + 1000 * (cloud == "azure"), 5000 + 1000 * (cloud == "azure") + POSTS))
        )
    statuses = [a[0] for a in answers]
    ids = {a[1] for a in answers}
    done = [wait_for_job(stack.api_url, job_id, timeout=180) for job_id in ids]
    elapsed = time.monotonic() - started
    latencies = sorted(a[2] for a in answers)
    p50, p95 = statistics.median(latencies) * 1000, latencies[int(len(latencies) * 0.95)] * 1000
    finished = sum(j["status"] == "DONE" for j in done)
    print(f"\nFIGURE concurrency {cloud}: {POSTS} concurrent POSTs (32 at once) -> {len(ids)} records, "
          f"{finished} DONE in {elapsed:.1f} s; POST p50 {p50:.0f} ms, p95 {p95:.0f} ms")  # fmt: skip
    assert statuses == [202] * POSTS
    assert len(ids) == POSTS
    assert all(j["status"] == "DONE" for j in done)
