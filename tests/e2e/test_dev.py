"""`make dev`'s driver: the stack file, and a clean stop on Ctrl-C."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from devstack import lifetime

ROOT = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.e2e, pytest.mark.emulator]

KEYS = {
    "gcp_api",
    "gcp_migrations_api",
    "azure_api",
    "gcs_endpoint",
    "gcs_bucket",
    "pubsub_emulator",
    "azure_connection_string",
    "azure_container",
}


def start_dev(stack_file: Path) -> tuple[subprocess.Popen[str], dict[str, Any], str]:
    """``python -m devstack.dev`` with its stack file at ``stack_file``, once everything answers: the process,
    the stack file, and the mark its children carry (``devstack.lifetime``)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "devstack.dev"],
        cwd=ROOT,
        env={**os.environ, "DEV_STACK_FILE": str(stack_file)},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    deadline = time.monotonic() + 120
    while not stack_file.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"no stack file after {time.monotonic() - deadline + 120:.0f} s: {proc.communicate()[0]}")
        time.sleep(0.2)
    runs = {_mark(pid) for pid in _children(proc.pid)} - {None}
    assert len(runs) == 1, runs
    run = str(runs.pop())
    assert len(lifetime.marked(run)) >= 10  # three emulators, eight function hosts and their workers, the devhost
    return proc, json.loads(stack_file.read_text()), run


def _children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(stat.parent.name))
    return found


def _mark(pid: int) -> str | None:
    with contextlib.suppress(OSError):
        for variable in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0"):
            if variable.startswith(f"{lifetime.RUN_VAR}=".encode()):
                return variable.split(b"=", 1)[1].decode()
    return None


def ports(stack: dict[str, Any]) -> list[int]:
    """Every port the stack file names: both APIs, fake-gcs-server, the Pub/Sub emulator."""
    urls = [stack["gcp_api"], stack["gcp_migrations_api"], stack["azure_api"], stack["gcs_endpoint"],
            f"http://{stack['pubsub_emulator']}"]  # fmt: skip
    return [p for p in (urllib.parse.urlsplit(u).port for u in urls if "None" not in u) if p]


def answering(stack: dict[str, Any]) -> list[int]:
    found = []
    for port in ports(stack):
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                found.append(port)
    return found


def assert_all_gone(run: str, stack: dict[str, Any], within: float) -> None:
    deadline = time.monotonic() + within
    while lifetime.marked(run) or answering(stack):
        assert time.monotonic() < deadline, (
            f"{within:.0f} s on: processes {lifetime.marked(run)} and ports {answering(stack)} are left"
        )
        time.sleep(0.1)


def test_dev_writes_the_stack_file_once_everything_answers_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    stack_file = tmp_path / "stack.json"
    proc, stack, run = start_dev(stack_file)
    try:
        assert set(stack) == KEYS
        for api in (stack["gcp_api"], stack["azure_api"]):
            with urllib.request.urlopen(api + "/", timeout=10) as page:
                assert page.status == 200
        assert stack["gcs_bucket"] and stack["azure_container"]
        # make smoke, as a user runs it against this stack: both deploy scripts' --check.
        smoke = subprocess.run(["make", "--no-print-directory", "smoke", f"STACK={stack_file}"], cwd=ROOT,
                               capture_output=True, text=True, timeout=300)  # fmt: skip
        assert smoke.returncode == 0, smoke.stdout + smoke.stderr
        for cloud in ("gcp", "azure"):
            assert f"smoke {cloud}: all worked" in smoke.stdout
            for path in ("API upload", "storage upload"):
                line = rf"{cloud}: {path} +DONE [0-9a-f]{{12}} .* result [\d,]+ B"
                assert re.search(line, smoke.stdout), smoke.stdout
        assert (
            "UseDevelopmentStorage" in stack["azure_connection_string"]
            or "BlobEndpoint=" in stack["azure_connection_string"]
        )
    finally:
        proc.send_signal(signal.SIGINT)
        output, _ = proc.communicate(timeout=15)
    assert proc.returncode == 0, output
    assert "stopped" in output
    assert not stack_file.exists()
    assert_all_gone(run, stack, within=1)  # the stack stopped everything before it exited


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_one_stop_signal_ends_the_whole_stack_within_15_s(stop: signal.Signals, tmp_path: Path) -> None:
    proc, stack, run = start_dev(tmp_path / "stack.json")
    began = time.monotonic()
    proc.send_signal(stop)
    try:
        output, _ = proc.communicate(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()  # its watchdog then ends the rest
        pytest.fail(f"devstack.dev still ran 15 s after {stop.name}: {proc.communicate()[0]}")
    assert proc.returncode == 0, output
    assert_all_gone(run, stack, within=max(1.0, 15 - (time.monotonic() - began)))
    assert not (tmp_path / "stack.json").exists()


def test_a_killed_dev_takes_its_whole_stack_with_it(tmp_path: Path) -> None:
    """SIGKILL runs no handler and no cleanup: the watchdog ends every process the stack started."""
    proc, stack, run = start_dev(tmp_path / "stack.json")
    assert answering(stack) == ports(stack)
    proc.kill()
    proc.communicate()
    assert_all_gone(run, stack, within=5)
    # Its file is left behind; `make smoke` refuses it rather than time out on it.
    smoke = subprocess.run(["make", "--no-print-directory", "smoke", f"STACK={tmp_path / 'stack.json'}"], cwd=ROOT,
                           capture_output=True, text=True, timeout=120)  # fmt: skip
    assert smoke.returncode != 0
    assert "is gone: nothing listens at" in smoke.stderr
