"""Restart the storage emulator of each cloud in the middle of a run: the functions retry, nothing is lost.

Uploads go on at a steady pace while the emulator is stopped for a few seconds and started
again on the same port with its data (``persistent``). Every upload must end DONE with
exactly one result; uploads refused while it was down are retried by the client, as a
user's client would.
"""

from __future__ import annotations

import contextlib
import hashlib
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from core.errors import CoreError
from core.jobs import JsonJobStore, Status, job_id_for
from core.ports import ObjectStore
from devstack.azure import AzureStack
from devstack.emulators import _Process
from devstack.environment import environment
from devstack.gcp import GcpStack
from tests.helper import encode, hopper, require_pubsub_emulator

pytestmark = [pytest.mark.reliability, pytest.mark.emulator]

UPLOADS = 30
PACE = 0.1  # seconds between uploads
RESTART_AFTER = 10  # uploads
DOWN = 3.0  # seconds the emulator stays down


@pytest.fixture(scope="module")
def gcp() -> Iterator[GcpStack]:
    require_pubsub_emulator("the GCP chain")
    with GcpStack(persistent=True) as running, environment(running.env()):
        yield running


@pytest.fixture(scope="module")
def azure() -> Iterator[AzureStack]:
    # Five deliveries 10 s apart: a job's retries outlast the outage. Stopping Azurite and starting it again with
    # its data keeps uploads waiting 17-21 s here; 1 s apart, a job was dead-lettered before it came back.
    with AzureStack(persistent=True, retry_delay=10) as running, environment(running.env()):
        yield running


def images() -> list[bytes]:
    return [encode(hopper().rotate(7 * i + 1).resize((1200, 900)), "JPEG") for i in range(UPLOADS)]


def upload_through_a_restart(store: ObjectStore, emulator: _Process, tag: str) -> tuple[list[str], str]:
    """Upload ``UPLOADS`` images at a steady pace; restart ``emulator`` after ``RESTART_AFTER`` of them.

    Returns the job ids and what the client went through.
    """
    data = images()
    keys = [f"uploads/restart-{tag}-{i:02d}.jpg" for i in range(UPLOADS)]
    restarted = threading.Event()
    retried, longest = 0, 0.0

    def restart() -> None:
        emulator.restart(down=DOWN)
        restarted.set()

    for i, (key, body) in enumerate(zip(keys, data, strict=True)):
        if i == RESTART_AFTER:
            threading.Thread(target=restart, daemon=True).start()
            time.sleep(0.2)  # the emulator is now down
        began = time.monotonic()
        retried += put_until_accepted(lambda key=key, body=body: store.put(key, body, content_type="image/jpeg"))
        longest = max(longest, time.monotonic() - began)
        time.sleep(PACE)
    assert restarted.wait(60), "the emulator did not come back"
    # An upload met the outage: it failed and was retried, or the SDK's own retries held it about as long.
    assert retried > 0 or longest >= DOWN / 2, f"no upload met the outage: {retried} retries, longest {longest:.1f} s"
    assert emulator.killed == 0, "stopped by SIGKILL: a crash, which may lose acknowledged writes, not a restart"
    ids = [job_id_for(k, hashlib.md5(b).hexdigest()) for k, b in zip(keys, data, strict=True)]
    return ids, f"longest upload {longest:.1f} s, {retried} client retries"


def put_until_accepted(put: Callable[[], object], timeout: float = 60) -> int:
    deadline, retries = time.monotonic() + timeout, 0
    while True:
        try:
            put()
            return retries
        except CoreError:
            if time.monotonic() > deadline:
                raise
            retries += 1
            time.sleep(0.5)


def wait_all_done(store: ObjectStore, job_ids: list[str], timeout: float = 180) -> dict[str, Status]:
    jobs = JsonJobStore(store)
    deadline = time.monotonic() + timeout
    states: dict[str, Status] = {}
    while time.monotonic() < deadline:
        for job_id in job_ids:
            if states.get(job_id) in (Status.DONE, Status.FAILED):
                continue
            with contextlib.suppress(CoreError):
                states[job_id] = jobs.get(job_id).status
        if all(states.get(j) in (Status.DONE, Status.FAILED) for j in job_ids):
            break
        time.sleep(0.5)
    return states


def check(cloud: str, store: ObjectStore, job_ids: list[str], client: str, started: float) -> None:
    states = wait_all_done(store, job_ids)
    took = time.monotonic() - started
    jobs = JsonJobStore(store)
    done = [j for j in job_ids if states.get(j) is Status.DONE]
    results = {info.key for info in store.list("results/") if "restart-" in info.key}
    attempts = max((jobs.get(j).attempts for j in done), default=0)
    print(f"\nFIGURE emulator restart, {cloud}: storage emulator down {DOWN:.0f} s after {RESTART_AFTER} of "
          f"{len(job_ids)} uploads ({client}); {len(done)} DONE, {len(results)} results, "
          f"max attempts {attempts}, all settled {took:.1f} s after the first upload")  # fmt: skip
    failed = {j: jobs.get(j).error for j in job_ids if states.get(j) is not Status.DONE}
    assert failed == {}, failed
    assert len(results) == len(job_ids)
    for job_id in job_ids:
        record = jobs.get(job_id)
        assert record.result in results


def test_fake_gcs_restart_mid_run_loses_nothing(gcp: GcpStack) -> None:
    assert gcp.gcs is not None
    started = time.monotonic()
    job_ids, client = upload_through_a_restart(gcp.store(), gcp.gcs, "gcp")
    check("GCP (fake-gcs-server)", gcp.store(), job_ids, client, started)


def test_azurite_restart_mid_run_loses_nothing(azure: AzureStack) -> None:
    assert azure.azurite is not None
    started = time.monotonic()
    job_ids, client = upload_through_a_restart(azure.store(), azure.azurite, "azure")
    check("Azure (Azurite)", azure.store(), job_ids, client, started)
