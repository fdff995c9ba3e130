"""SIGKILL the Azure function host 5 times during the migration's fan-out: the batches come back after their
lease, and the run ends clean."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from core.clouds.azure_destination import AzureBlobDestination
from core.clouds.gcs import GcsObjectStore
from core.clouds.gcs_source import GcsSource
from devstack.azure import AzureStack
from devstack.emulators import FakeGcs
from devstack.environment import environment
from devstack.rclone import rclone
from migrate.verify import run_verify
from tests.helper import http_json, unique_name

pytestmark = [pytest.mark.reliability, pytest.mark.emulator]

ROOT = Path(__file__).resolve().parents[2]
LEASE = 3
KILLS = 5


@pytest.fixture(scope="module")
def clouds() -> Iterator[tuple[FakeGcs, AzureStack]]:
    with FakeGcs() as gcs:
        gcs_env = {
            **gcs.env(),
            "GOOGLE_CLOUD_PROJECT": "local",
            "MIGRATE_SOURCES": "src-*",
            "MIGRATE_CONTAINERS": "dst-*",
        }
        with (
            AzureStack(lease=LEASE, retry_delay=1, extra_env=gcs_env) as azure,
            environment({**gcs_env, **azure.env()}),
        ):
            yield gcs, azure


def copied(container: str) -> int:
    return sum(1 for _ in AzureBlobDestination(container).list("data/"))


def test_kill_the_host_mid_fanout_then_the_run_finishes(clouds: tuple[FakeGcs, AzureStack]) -> None:
    gcs, azure = clouds
    rng = random.Random(7)
    bucket, container = unique_name("src"), unique_name("dst")
    GcsObjectStore(bucket).create_bucket()
    AzureBlobDestination(container).create()
    payloads = {f"data/{i:04d}.bin": rng.randbytes(rng.randint(1, 4096)) for i in range(1000)}
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda key: GcsObjectStore(bucket).put(key, payloads[key]), payloads))
    argv = ["plan", f"gs://{bucket}", f"az://{container}", "--batch-size", "20", "--json"]
    plan = subprocess.run(
        [sys.executable, "-m", "migrate", *argv], cwd=ROOT, capture_output=True, text=True, env=os.environ, check=True
    )
    run_id = json.loads(plan.stdout.strip().splitlines()[-1])["run_id"]
    status_url = f"{azure.api_url}/migrations/{run_id}?container={urllib.parse.quote(container)}"
    copied_at_kills: list[int] = []
    present = 0
    for _ in range(KILLS):  # each time mid-run: its batches' messages are leased, not deleted
        # By progress, not by time: at least one more object copied since the last kill, and many still to copy.
        target = present + rng.randint(1, (len(payloads) - present) // 6)
        deadline = time.monotonic() + 60
        while copied(container) < target:
            assert time.monotonic() < deadline, f"no progress past {present} copied"
            time.sleep(0.05)
        azure.kill_host()
        present = copied(container)
        assert target <= present < len(payloads), f"killed with {present} of {len(payloads)} copied"
        copied_at_kills.append(present)
        azure.restart_host()
    deadline, found = time.monotonic() + 120, {}
    while time.monotonic() < deadline:
        _, found = http_json("GET", status_url)
        if found.get("state") in ("done", "failed"):
            break
        time.sleep(0.5)
    verified = run_verify(GcsSource(bucket), AzureBlobDestination(container))
    # The run record lives in the destination, under _migrations/: not a copy of anything.
    check = rclone(
        ["check", f"gcs:{bucket}", f"az:{container}", "--exclude", "_migrations/**"],
        gcs,
        azure.azurite,  # type: ignore[arg-type]
    )
    print(f"\nFIGURE crash mid-fan-out: {len(payloads)} objects in {found.get('batches')} batches; host SIGKILLed "
          f"{KILLS} times, with {copied_at_kills} copied; after the last restart: run {found.get('state')}, "
          f"{found.get('copied')} copied + {found.get('skipped')} skipped; verify {verified.to_dict()}")  # fmt: skip
    assert found.get("state") == "done"
    assert verified.clean and verified.same == len(payloads)
    assert check.returncode == 0 and "0 differences found" in check.stderr
