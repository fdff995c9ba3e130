"""SIGKILL during `migrate copy` at random points: every re-run ends verified, by us and by rclone.

Two ways: five rounds of one kill and a re-run, each verified; and five kills in a row
over the same destination (each run resuming the last) before the run that finishes.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from core.clouds.azure_destination import AzureBlobDestination
from core.clouds.gcs import GcsObjectStore
from core.clouds.gcs_source import GcsSource
from devstack.emulators import Azurite, FakeGcs
from devstack.rclone import rclone
from migrate.verify import run_verify
from tests.helper import unique_name

pytestmark = [pytest.mark.reliability, pytest.mark.emulator]

ROOT = Path(__file__).resolve().parents[2]
BLOCK = 512 * 1024


def populate(small: int, large: int, rng: random.Random) -> tuple[str, dict[str, int]]:
    """A bucket of ``small`` objects up to 8 KiB and ``large`` of 6 MiB (12 staged blocks each)."""
    bucket = unique_name("src")
    source_store = GcsObjectStore(bucket)
    source_store.create_bucket()
    sizes = {f"small/{i:04d}.bin": rng.randint(1, 8192) for i in range(small)}
    sizes.update({f"large/{i}.bin": 6 * 1024 * 1024 + i for i in range(large)})
    payloads = {key: rng.randbytes(size) for key, size in sizes.items()}
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda key: source_store.put(key, payloads[key]), payloads))
    return bucket, sizes


def copy_argv(bucket: str, container: str, workers: int = 8) -> list[str]:
    return [sys.executable, "-m", "migrate", "copy", f"gs://{bucket}", f"az://{container}",
            "--workers", str(workers), "--block-size", str(BLOCK)]  # fmt: skip


def kill_after(argv: list[str], copied: int, dest: AzureBlobDestination, sizes: dict[str, int]) -> int:
    """Start a copy and SIGKILL it once ``copied`` blobs are present, whatever its start-up takes.

    Asserts that the kill landed mid-work (some objects still to copy) and that no partial blob is
    visible; returns the blobs present.
    """
    proc = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=os.environ)
    deadline = time.monotonic() + 120
    while sum(1 for _ in dest.list()) < copied:
        assert proc.poll() is None, "the copy ended before the kill"
        assert time.monotonic() < deadline, "the copy made no progress"
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    blobs = {d.key: d.size for d in dest.list()}
    # A killed copy never leaves a partial blob under its final name.
    assert all(size == sizes[key] for key, size in blobs.items()), "a partial blob is visible"
    assert copied <= len(blobs) < len(sizes), f"killed with {len(blobs)} of {len(sizes)} blobs present"
    return len(blobs)


def finish_and_check(
    argv: list[str], bucket: str, dest: AzureBlobDestination, gcs: FakeGcs, azurite: Azurite
) -> tuple[dict[str, object], int, str]:
    """The re-run that finishes, then ``migrate verify`` and ``rclone check``: (summary, same, differences)."""
    final = subprocess.run([*argv, "--json"], cwd=ROOT, capture_output=True, text=True, env=os.environ)
    assert final.returncode == 0, final.stderr
    found = run_verify(GcsSource(bucket), dest)
    check = rclone(["check", f"gcs:{bucket}", f"az:{dest.container_name}"], gcs, azurite)
    assert found.clean, found.to_dict()
    assert check.returncode == 0 and "0 differences found" in check.stderr, check.stderr[-2000:]
    return json.loads(final.stdout.strip().splitlines()[-1]), found.same, _differences(check.stderr)


def test_each_of_five_kills_then_a_rerun_ends_verified(gcs_env: FakeGcs, azure_env: Azurite) -> None:
    rng = random.Random(27112026)
    bucket, sizes = populate(400, 3, rng)
    rounds = []
    for _ in range(5):
        dest = AzureBlobDestination(unique_name("dst"))
        dest.create()
        argv = copy_argv(bucket, dest.container_name)
        target = rng.randint(1, len(sizes) // 2)  # by progress, not by time: never before the first copy
        present = kill_after(argv, target, dest, sizes)
        summary, same, differences = finish_and_check(argv, bucket, dest, gcs_env, azure_env)
        assert same == len(sizes) and summary["copied"] + summary["skipped"] == len(sizes)
        # What was there is skipped; a request the killed process had already sent may land just after the kill.
        assert summary["skipped"] >= present
        rounds.append((target, present, summary["copied"], differences))
    print(f"\nFIGURE crash mid-migration, one kill per round: {len(sizes)} objects; per round (kill once n copied, "
          f"blobs present, copied by the re-run, rclone check) {rounds}; verify clean every time")  # fmt: skip


def test_kill_copy_five_times_then_finish(gcs_env: FakeGcs, azure_env: Azurite) -> None:
    rng = random.Random(20261127)
    bucket, sizes = populate(1200, 6, rng)
    dest = AzureBlobDestination(unique_name("dst"))
    dest.create()
    # Two workers: each kill lands within a listing's time of its target, with most of the bucket still to copy.
    argv = copy_argv(bucket, dest.container_name, workers=2)
    kills, present = [], 0
    for _ in range(5):
        # Each run resumes the last: it is killed once it has copied at least one more object.
        target = present + rng.randint(1, (len(sizes) - present) // 10)
        present = kill_after(argv, target, dest, sizes)
        kills.append((target, present))
    summary, same, differences = finish_and_check(argv, bucket, dest, gcs_env, azure_env)
    print(f"\nFIGURE crash mid-migration, five kills in a row: {len(sizes)} objects; SIGKILL once (n copied, blobs "
          f"present) {kills}; final run {summary}; verify {same} same; rclone check: {differences}")  # fmt: skip
    assert same == len(sizes)


def _differences(rclone_output: str) -> str:
    return next((line.rsplit(": ", 1)[-1] for line in rclone_output.splitlines() if "differences" in line), "?")
