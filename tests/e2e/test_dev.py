"""`make dev`'s driver: the stack file, and a clean stop on Ctrl-C."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.e2e, pytest.mark.emulator]

KEYS = {
    "gcp_api",
    "azure_api",
    "gcs_endpoint",
    "gcs_bucket",
    "pubsub_emulator",
    "azure_connection_string",
    "azure_container",
}


def test_dev_writes_the_stack_file_once_everything_answers_and_cleans_up(tmp_path: Path) -> None:
    stack_file = tmp_path / "stack.json"
    proc = subprocess.Popen(
        [sys.executable, "-m", "devstack.dev"],
        cwd=ROOT,
        env={**os.environ, "DEV_STACK_FILE": str(stack_file)},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 120
        while not stack_file.exists():
            assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
            assert time.monotonic() < deadline, "no stack file after 120 s"
            time.sleep(0.2)
        stack = json.loads(stack_file.read_text())
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
        output, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, output
    assert not stack_file.exists()
    for api in (stack["gcp_api"], stack["azure_api"]):
        port = int(api.split(":")[2].split("/")[0])
        with socket.socket() as sock:
            assert sock.connect_ex(("127.0.0.1", port)) != 0, f"{api} still listens after Ctrl-C"
