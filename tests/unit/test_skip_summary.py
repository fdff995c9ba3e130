"""The suite's summary says when Google's Pub/Sub emulator was absent, instead of 'not needed'."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_a_run_without_the_pubsub_emulator_says_it_was_absent(tmp_path: Path) -> None:
    # No java on PATH: the emulator cannot run, so every test that needs it is skipped with the reason.
    env = {**os.environ, "PATH": str(tmp_path), "PUBSUB_EMULATOR_BIN": ""}
    test = "tests/e2e/test_chain.py::test_an_upload_through_the_api_is_done[gcp_stack]"
    run = subprocess.run(
        [sys.executable, "-m", "pytest", test, "-p", "no:cacheprovider", "-rs"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert "1 skipped" in run.stdout
    assert "needs Java 8+ on PATH" in run.stdout
    assert "pubsub-emulator: ABSENT, its tests skipped" in run.stdout
    assert "not needed by the selected tests" not in run.stdout.split("pubsub-emulator:", 1)[1].splitlines()[0]
