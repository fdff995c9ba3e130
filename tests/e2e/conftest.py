"""The local stacks as session fixtures."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from devstack.azure import AzureStack
from devstack.environment import environment
from devstack.gcp import GcpStack
from tests.helper import EMULATORS, require_pubsub_emulator

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
