"""The deploy scripts' smoke check (``--check``) against the local stacks: it passes, and it can fail."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.emulator]

ROOT = Path(__file__).resolve().parents[2]


def stack_file(tmp_path: Path, **stacks: Any) -> Path:
    """A stack file as ``make dev`` writes it, from the running stacks (an unreachable stand-in for the others)."""
    found: dict[str, Any] = {
        "gcp_api": "http://127.0.0.1:9", "gcs_endpoint": "http://127.0.0.1:9", "gcs_bucket": "none",
        "azure_api": "http://127.0.0.1:9/api", "azure_connection_string": "UseDevelopmentStorage=true",
        "azure_container": "none", "pubsub_emulator": None,
    }  # fmt: skip
    for stack in stacks.values():
        found.update(stack.describe())
    path = tmp_path / "stack.json"
    path.write_text(json.dumps(found))
    return path


def check(script: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, f"deploy/{script}", "--check", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)  # fmt: skip


def test_azure_check_passes_on_the_local_stack_with_a_key(azure_stack: Any, tmp_path: Path) -> None:
    done = check("azure.py", "--stack", str(stack_file(tmp_path, azure=azure_stack)), "--function-key", "k")
    assert done.returncode == 0, done.stderr
    assert "azure: API upload      DONE" in done.stdout and "azure: storage upload  DONE" in done.stdout


def test_gcp_check_passes_on_the_local_stack(gcp_stack: Any, tmp_path: Path) -> None:
    done = check("gcp.py", "--stack", str(stack_file(tmp_path, gcp=gcp_stack)))
    assert done.returncode == 0, done.stderr
    assert "gcp: storage upload  DONE" in done.stdout


def test_an_unreachable_api_fails_with_one_line(tmp_path: Path) -> None:
    done = check("azure.py", "--api", "http://127.0.0.1:9/api", "--stack", str(stack_file(tmp_path)))
    assert done.returncode == 1
    assert "smoke azure: FAILED: GET http://127.0.0.1:9/api/: cannot reach it" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize("script", ["gcp.py", "azure.py"])
def test_a_stack_file_whose_processes_are_gone_is_refused(script: str, tmp_path: Path) -> None:
    """A `make dev` that was killed leaves its file behind; the check names it rather than time out on it."""
    done = check(script, "--stack", str(stack_file(tmp_path)))
    assert done.returncode == 2, done.stdout + done.stderr
    assert f"the stack of {tmp_path / 'stack.json'} is gone: nothing listens at http://127.0.0.1:9" in done.stderr
    assert "Start `make dev` again" in done.stderr


def test_no_stack_and_no_api_cannot_start(tmp_path: Path) -> None:
    done = check("gcp.py", "--stack", str(tmp_path / "missing.json"))
    assert done.returncode == 2
    assert "run `make dev`, or give --api" in done.stderr
