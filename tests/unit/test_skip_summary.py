"""A part the suite needs that is absent: a skip that says why locally, a failure that names it under CI=true."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TEST = "tests/e2e/test_chain.py::test_an_upload_through_the_api_is_done[gcp_stack]"


def without_java(tmp_path: Path, ci: str | None) -> subprocess.CompletedProcess[str]:
    """The chain test in a child pytest with no java on PATH, so that the Pub/Sub emulator cannot run."""
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    env.update({"PATH": str(tmp_path), "PUBSUB_EMULATOR_BIN": ""})
    if ci is not None:
        env["CI"] = ci
    return subprocess.run(
        [sys.executable, "-m", "pytest", TEST, "-p", "no:cacheprovider", "-rs"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_a_local_run_without_the_pubsub_emulator_skips_and_says_it_was_absent(tmp_path: Path) -> None:
    run = without_java(tmp_path, ci=None)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "1 skipped" in run.stdout
    assert "needs Java 8+ on PATH" in run.stdout
    assert "pubsub-emulator: ABSENT, its tests skipped" in run.stdout
    assert "not needed by the selected tests" not in run.stdout.split("pubsub-emulator:", 1)[1].splitlines()[0]


@pytest.mark.parametrize("ci", ["true", "1"])
def test_under_ci_an_absent_pubsub_emulator_fails_and_is_named(tmp_path: Path, ci: str) -> None:
    run = without_java(tmp_path, ci=ci)
    assert run.returncode == 1, run.stdout + run.stderr
    assert re.search(r"\b1 (failed|error)\b", run.stdout.splitlines()[-1]), run.stdout  # in the fixture: an error
    assert "skipped" not in run.stdout.splitlines()[-1]
    assert "Google's Pub/Sub emulator is absent, and CI=true needs every part" in run.stdout
    assert "needs Java 8+ on PATH" in run.stdout
