"""SIGKILL the GCP processing function mid-job: redelivery finishes the job, and no job stays PROCESSING."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from core.clouds.pubsub import PubSubTaskQueue
from core.jobs import Job, JsonJobStore, Status, job_id_for, utcnow
from devstack.environment import environment
from devstack.gcp import JOBS_TOPIC, GcpStack
from tests.conftest import require_pubsub_emulator
from tests.e2e.conftest import wait_for_job
from tests.helper import encode, hopper

pytestmark = [pytest.mark.reliability, pytest.mark.emulator, pytest.mark.pubsub]

LEASE = 2
SHARED = Path(__file__).resolve().parents[3] / "shared" / "data" / "seed-photos" / "10.jpg"


@pytest.fixture(scope="module")
def stack() -> Iterator[GcpStack]:
    require_pubsub_emulator("the GCP chain")
    with GcpStack(extra_env={"GRAYSCALE_LEASE_SECONDS": str(LEASE)}) as running, environment(running.env()):
        yield running


def big_photo() -> bytes:
    if SHARED.exists():
        return SHARED.read_bytes()  # 16 MP: long enough to be killed in the middle
    return encode(hopper().resize((4000, 3000)), "JPEG", quality=95)


def test_sigkill_during_processing_then_redelivery_finishes(stack: GcpStack) -> None:
    data = big_photo()
    key = f"uploads/killed-{time.monotonic_ns()}.jpg"
    job_id = job_id_for(key, hashlib.md5(data).hexdigest())
    jobs = JsonJobStore(stack.store())
    stack.store().put(key, data, content_type="image/jpeg")
    deadline, seen = time.monotonic() + 20, None
    while time.monotonic() < deadline:  # wait until a worker has claimed the job
        try:
            seen = jobs.get(job_id)
        except Exception:
            seen = None
        if seen is not None and seen.status is not Status.PENDING:
            break
        time.sleep(0.01)
    stack.kill("process_job")
    killed_at = seen.status.value if seen else "not seen"
    stack.restart("process_job")
    done = wait_for_job(stack.api_url, job_id, timeout=60)
    print(f"\nFIGURE crash mid-job: SIGKILL with the job {killed_at}; after restart and redelivery: "
          f"{done['status']} in {done['attempts']} attempt(s)")  # fmt: skip
    assert done["status"] == "DONE"


def test_a_job_left_processing_by_a_dead_worker_is_taken_back_after_the_lease(stack: GcpStack) -> None:
    jobs = JsonJobStore(stack.store())
    data = encode(hopper().rotate(33), "JPEG")
    key = f"uploads/orphan-{time.monotonic_ns()}.jpg"
    stack.store().put(key, data, content_type="image/jpeg")
    time.sleep(1)  # its own event may have processed it; make it look like a dead worker's instead
    orphan = Job.new(job_id_for(key, hashlib.md5(data).hexdigest()), key, "image/jpeg")
    orphan = replace(orphan, status=Status.PROCESSING, attempts=1, updated=utcnow())
    jobs.store.put(jobs.key(orphan.id), orphan.to_json(), content_type="application/json")
    started = time.monotonic()
    PubSubTaskQueue(JOBS_TOPIC).send({"job_id": orphan.id})  # the redelivery of the dead worker's message
    done = wait_for_job(stack.api_url, orphan.id, timeout=60)
    print(f"\nFIGURE lease: a job left PROCESSING by a dead worker was taken back and finished in "
          f"{time.monotonic() - started:.1f} s (lease {LEASE} s), attempts {done['attempts']}")  # fmt: skip
    assert done["status"] == "DONE" and done["attempts"] == 2
