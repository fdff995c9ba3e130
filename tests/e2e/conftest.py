"""The local stacks as session fixtures."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from devstack.azure import AzureStack
from devstack.environment import environment
from devstack.gcp import GcpStack
from tests.conftest import EMULATORS, require_pubsub_emulator

# Both stacks run with the same small upload cap, so that the parity suite can send "too large".
PARITY_ENV = {"GRAYSCALE_MAX_UPLOAD_BYTES": "1000000"}


@pytest.fixture(scope="session")
def gcp_stack() -> Iterator[GcpStack]:
    """The whole GCP chain; skipped with the reason where the Pub/Sub emulator is absent."""
    require_pubsub_emulator("the GCP chain")
    with GcpStack(extra_env=PARITY_ENV) as stack, environment(stack.env()):
        EMULATORS.setdefault("pubsub-emulator", f"ran in the GCP stack on {stack.pubsub.host if stack.pubsub else '-'}")
        yield stack


@pytest.fixture(scope="session")
def azure_stack() -> Iterator[AzureStack]:
    """Azurite and the devhost, retrying failed queue messages after 1 s instead of host.json's 10 s."""
    with AzureStack(retry_delay=1, extra_env=PARITY_ENV) as stack, environment(stack.env()):
        EMULATORS.setdefault("azurite", f"ran in the Azure stack, devhost on {stack.api_url}")
        yield stack


def http_json(
    method: str, url: str, body: bytes | None = None, headers: dict[str, str] | None = None
) -> tuple[int, Any]:
    request = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read() or b"null")


def wait_for_job(api: str, job_id: str, *, until: tuple[str, ...] = ("DONE", "FAILED"), timeout: float = 30) -> Any:
    """Poll the API until the job reaches one of ``until``; fail with the last record otherwise."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        status, last = http_json("GET", f"{api}/jobs/{job_id}")
        if status == 200 and last["status"] in until:
            return last
        time.sleep(0.1)
    pytest.fail(f"job {job_id} did not reach {until} in {timeout}s; last: {last}")
