"""SIGKILL during `migrate copy` at 5 random points: every re-run ends verified, by us and by rclone."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from core.clouds.azure_blob import AzureBlobDestination
from core.clouds.gcs import GcsObjectStore, GcsSource
from devstack.emulators import Azurite, FakeGcs
from devstack.rclone import rclone
from migrate.verify import run_verify
from tests.conftest import unique_name

pytestmark = [pytest.mark.reliability, pytest.mark.emulator]

ROOT = Path(__file__).resolve().parents[2]
BLOCK = 512 * 1024


def test_kill_copy_five_times_then_finish(gcs_env: FakeGcs, azure_env: Azurite) -> None:
    rng = random.Random(20261127)
    bucket, container = unique_name("src"), unique_name("dst")
    source_store = GcsObjectStore(bucket)
    source_store.create_bucket()
    AzureBlobDestination(container).create()
    sizes = {f"small/{i:04d}.bin": rng.randint(1, 8192) for i in range(1200)}
    sizes.update({f"large/{i}.bin": 6 * 1024 * 1024 + i for i in range(6)})
    payloads = {key: rng.randbytes(size) for key, size in sizes.items()}
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda key: source_store.put(key, payloads[key]), payloads))
    source, dest = GcsSource(bucket), AzureBlobDestination(container)
    argv = [sys.executable, "-m", "migrate", "copy", f"gs://{bucket}", f"az://{container}",
            "--workers", "8", "--block-size", str(BLOCK)]  # fmt: skip

    kills = []
    for _ in range(5):
        proc = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=os.environ)
        delay = rng.uniform(0.5, 1.3)  # start-up takes about 0.45 s
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        blobs = {d.key: d.size for d in dest.list()}
        # A killed copy never leaves a partial blob under its final name.
        assert all(size == sizes[key] for key, size in blobs.items()), "a partial blob is visible"
        kills.append((round(delay, 2), len(blobs)))
    final = subprocess.run([*argv, "--json"], cwd=ROOT, capture_output=True, text=True, env=os.environ)
    assert final.returncode == 0, final.stderr
    summary = final.stdout.strip().splitlines()[-1]
    found = run_verify(source, dest)
    check = rclone(["check", f"gcs:{bucket}", f"az:{container}"], gcs_env, azure_env)
    print(
        f"\nFIGURE crash mid-migration: {len(sizes)} objects; SIGKILL after (s, blobs present) {kills}; "
        f"final run {summary}; verify {found.to_dict()}; rclone check: {_differences(check.stderr)}"
    )
    assert found.clean and found.same == len(sizes)
    assert check.returncode == 0 and "0 differences found" in check.stderr


def _differences(rclone_output: str) -> str:
    return next((line.split(": ", 1)[-1] for line in rclone_output.splitlines() if "differences" in line), "?")
