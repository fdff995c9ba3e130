"""SIGKILL the processing function mid-job, on both clouds: redelivery finishes the job, and no job stays
PROCESSING (the job's lease takes it back from a dead worker)."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from core.clouds.pubsub import PubSubTaskQueue
from core.jobs import Job, JsonJobStore, Status, job_id_for, utcnow
from core.ports import ObjectStore
from devstack.azure import AzureStack
from devstack.environment import environment
from devstack.gcp import JOBS_TOPIC, GcpStack
from tests.helper import encode, hopper, require_pubsub_emulator, wait_for_job

pytestmark = [pytest.mark.reliability, pytest.mark.emulator]

LEASE = 2
MESSAGE_LEASE = 3
SHARED = Path(__file__).resolve().parents[3] / "shared" / "data" / "seed-photos" / "10.jpg"


@pytest.fixture(scope="module")
def azure() -> Iterator[AzureStack]:
    # The devhost hides a message it is running for MESSAGE_LEASE s: a dead host's messages reappear then.
    extra = {"GRAYSCALE_LEASE_SECONDS": str(LEASE)}
    with AzureStack(lease=MESSAGE_LEASE, retry_delay=1, extra_env=extra) as running, environment(running.env()):
        yield running


@pytest.fixture(scope="module")
def stack() -> Iterator[GcpStack]:
    require_pubsub_emulator("the GCP chain")
    with GcpStack(extra_env={"GRAYSCALE_LEASE_SECONDS": str(LEASE)}) as running, environment(running.env()):
        yield running


def big_photo() -> bytes:
    if SHARED.exists():
        return SHARED.read_bytes()  # 16 MP: long enough to be killed in the middle
    return encode(hopper().resize((4000, 3000)), "JPEG", quality=95)


def upload_until_claimed(store: ObjectStore) -> tuple[str, str]:
    """Upload a big photo and wait until a worker has claimed its job.

    Returns the job id and its status then (``not seen`` if it never showed).
    """
    data = big_photo()
    key = f"uploads/killed-{time.monotonic_ns()}.jpg"
    job_id = job_id_for(key, hashlib.md5(data).hexdigest())
    store.put(key, data, content_type="image/jpeg")
    jobs = JsonJobStore(store)
    deadline, seen = time.monotonic() + 20, None
    while time.monotonic() < deadline:
        try:
            seen = jobs.get(job_id)
        except Exception:
            seen = None
        if seen is not None and seen.status is not Status.PENDING:
            break
        time.sleep(0.01)
    return job_id, seen.status.value if seen else "not seen"


def killed_mid_job(store: ObjectStore, job_id: str, killed_at: str) -> bool:
    """The kill landed in the middle of the work: claimed before it, neither done nor failed after it, no result."""
    after = JsonJobStore(store).get(job_id)
    return (
        killed_at == "PROCESSING"
        and (after.status, after.attempts, after.result) == (Status.PROCESSING, 1, None)
        and not list(store.list(after.source.replace("uploads/", "results/", 1)))
    )


def kill_mid_job(store: ObjectStore, kill: Callable[[], None], restart: Callable[[], None]) -> tuple[str, str]:
    """Upload, and kill the worker once it has claimed the job; again (a new upload) when the kill came after the
    render had already written its result (a 16 MP render takes about a second, and a loaded machine varies).
    The job id and its status at the kill."""
    tried = []
    for _ in range(3):
        job_id, killed_at = upload_until_claimed(store)
        kill()
        if killed_mid_job(store, job_id, killed_at):
            return job_id, killed_at
        tried.append(f"{job_id}: {killed_at}, then {JsonJobStore(store).get(job_id).status.value}")
        restart()
    raise AssertionError(f"no kill landed in the middle of a job in 3 tries: {tried}")


@pytest.mark.pubsub
def test_sigkill_during_processing_then_redelivery_finishes(stack: GcpStack) -> None:
    job_id, killed_at = kill_mid_job(
        stack.store(), lambda: stack.kill("process_job"), lambda: stack.restart("process_job")
    )
    stack.restart("process_job")
    done = wait_for_job(stack.api_url, job_id, timeout=60)
    print(f"\nFIGURE crash mid-job, GCP: SIGKILL with the job {killed_at}; after restart and redelivery: "
          f"{done['status']} in {done['attempts']} attempt(s)")  # fmt: skip
    assert done["status"] == "DONE" and done["attempts"] >= 2


def test_sigkill_of_the_azure_host_during_processing_then_redelivery_finishes(azure: AzureStack) -> None:
    job_id, killed_at = kill_mid_job(azure.store(), azure.kill_host, azure.restart_host)
    started = time.monotonic()
    azure.restart_host()
    done = wait_for_job(azure.api_url, job_id, timeout=60)
    print(f"\nFIGURE crash mid-job, Azure: SIGKILL of the host with the job {killed_at}; a new host finished it "
          f"{time.monotonic() - started:.1f} s later (message lease {MESSAGE_LEASE} s, job lease {LEASE} s): "
          f"{done['status']} in {done['attempts']} attempt(s)")  # fmt: skip
    assert done["status"] == "DONE" and done["attempts"] >= 2
    assert azure.store().head(done["result"]).size > 0


@pytest.mark.pubsub
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
    # Taken back only once the dead worker's lease ran out, counted from the time its record says it started.
    from datetime import datetime

    finished = datetime.fromisoformat(done["updated"].replace("Z", "+00:00"))
    assert (finished - orphan.updated).total_seconds() >= LEASE, (orphan.updated, done["updated"])
