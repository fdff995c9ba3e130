"""Session fixtures for the real emulators, started on free ports of 127.0.0.1.

Each fixture starts its emulator only when a test asks for it, and stops it
at the end of the session. An emulator that is not installed fails the test
(fake-gcs-server, Azurite: CI installs them) or skips it with the reason
(Google's Pub/Sub emulator, which comes only with some google-cloud-cli installs).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from devstack.emulators import Azurite, EmulatorUnavailable, FakeGcs, PubSubEmulator
from tests.helper import EMULATORS, absent


@pytest.fixture(scope="session")
def fake_gcs() -> Iterator[FakeGcs]:
    with FakeGcs() as server:
        EMULATORS["fake-gcs-server"] = f"ran on {server.url}"
        yield server


@pytest.fixture(scope="session")
def azurite() -> Iterator[Azurite]:
    with Azurite() as server:
        EMULATORS["azurite"] = f"ran on blob :{server.blob_port}, queue :{server.queue_port}"
        yield server


@pytest.fixture(scope="session")
def pubsub_emulator() -> Iterator[PubSubEmulator]:
    try:
        emulator = PubSubEmulator()
        emulator.start()
    except EmulatorUnavailable as exc:
        EMULATORS["pubsub-emulator"] = f"ABSENT, its tests skipped (failed under CI=true): {exc}"
        absent("Google's Pub/Sub emulator", str(exc))
    EMULATORS["pubsub-emulator"] = f"ran on {emulator.host}"
    try:
        yield emulator
    finally:
        emulator.stop()


@pytest.fixture
def gcs_env(fake_gcs: FakeGcs, monkeypatch: pytest.MonkeyPatch) -> FakeGcs:
    """Point google-cloud-storage at fake-gcs-server for this test."""
    for name, value in fake_gcs.env().items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("GOOGLE_CLOUD_PROJECT", "local")
    return fake_gcs


@pytest.fixture
def azure_env(azurite: Azurite, monkeypatch: pytest.MonkeyPatch) -> Azurite:
    """Point the Azure SDKs at Azurite for this test."""
    for name, value in azurite.env().items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AZURE_STORAGE_ACCOUNT_URL", raising=False)
    return azurite


@pytest.fixture
def pubsub_env(pubsub_emulator: PubSubEmulator, monkeypatch: pytest.MonkeyPatch) -> PubSubEmulator:
    """Point google-cloud-pubsub at the emulator for this test."""
    for name, value in pubsub_emulator.env().items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("GOOGLE_CLOUD_PROJECT", "local")
    return pubsub_emulator


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not EMULATORS:
        return  # a run of unit tests only
    terminalreporter.section("emulators")
    for name in ("fake-gcs-server", "azurite", "pubsub-emulator"):
        terminalreporter.write_line(f"{name}: {EMULATORS.get(name, 'not needed by the selected tests')}")
