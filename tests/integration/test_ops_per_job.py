"""The storage and queue requests one processed upload costs may not grow (bench/ops_per_job.py counts them)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.emulator

ROOT = Path(__file__).resolve().parents[2]

BUDGET = {  # per upload, as measured on 2026-11-27; lower them when a change cuts one
    "gcp": {
        "straight": {"storage class A": 4, "storage class B": 7, "queue sends": 1, "the upload itself: class A": 1},
        # The API reads the hold marker again after writing the upload (a hold landing between check and write).
        "api": {"storage class A": 4, "storage class B": 9, "queue sends": 1, "the upload itself: class A": 2,
                "the upload itself: class B": 2},
    },
    "azure": {
        "straight": {"storage read": 5, "storage write": 4, "queue sends": 1, "the upload itself: write": 1},
        "api": {"storage read": 6, "storage write": 4, "queue sends": 1, "the upload itself: read": 2,
                "the upload itself: write": 2},
    },
}  # fmt: skip


def test_operations_per_job_do_not_grow() -> None:
    done = subprocess.run([sys.executable, "bench/ops_per_job.py", "--jobs", "3", "--json"], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout.strip().splitlines()[-1])
    for cloud, ways in BUDGET.items():
        for way, budget in ways.items():
            measured = found[cloud][way]
            grown = {k: (v, budget.get(k, 0)) for k, v in measured.items() if v > budget.get(k, 0)}
            assert not grown, f"{cloud} {way}: more operations per job than the budget (measured, budget): {grown}"
            assert measured["queue sends"] == 1, "one message per upload"
