"""The local stacks as session fixtures."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from devstack.azure import AzureStack
from devstack.environment import environment
from devstack.gcp import GcpStack
from tests.helper import EMULATORS, absent, require_pubsub_emulator

# Both stacks run with the same small upload cap, so that the parity suite can send "too large".
PARITY_ENV = {"GRAYSCALE_MAX_UPLOAD_BYTES": "1000000"}
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
# As root, and on a closed network: no sandbox, and no background traffic.
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync",
]  # fmt: skip


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    """Headless Chromium, driven by Playwright."""
    if not Path(CHROMIUM).exists():
        absent("Chromium", f"nothing at {CHROMIUM} (apt: chromium; .ci/run installs it)")
    try:
        import playwright.sync_api as playwright_api
    except ImportError:
        absent("playwright", "pip install playwright (requirements-dev.txt)")
    with playwright_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


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
