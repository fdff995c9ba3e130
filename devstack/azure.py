"""The local Azure stack: Azurite and the devhost (``functions_azure.devhost``) running ``function_app.py``.

The devhost serves the HTTP routes on ``http://127.0.0.1:7071/api`` (or a free
port), drains the Azurite queues into the queue triggers, and stands in for
Event Grid by turning new blobs under ``uploads/`` into blob trigger calls.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from core.clouds.azure_blob import AzureBlobObjectStore
from devstack.emulators import HOST, ROOT, Azurite, _Process, free_port, port_is_free
from devstack.environment import Stack, environment

DEVHOST_PORT = 7071


class DevHostProcess(_Process):
    """``python -m functions_azure.devhost`` for this project's ``function_app.py``."""

    name = "devhost"

    def __init__(self, port: int | None = None, *, workdir: Path | None = None) -> None:
        super().__init__(workdir)
        self.port = port or free_port()

    @property
    def api_url(self) -> str:
        return f"http://{HOST}:{self.port}/api"

    def launch(self, env: dict[str, str], retry_delay: float | None = None, lease: float | None = None) -> None:
        argv = [sys.executable, "-m", "functions_azure.devhost", "--port", str(self.port), "--host", HOST]
        if retry_delay is not None:
            argv += ["--retry-delay", str(retry_delay)]
        if lease is not None:
            argv += ["--lease", str(lease)]
        self._spawn(argv, self.port, env={**env, "PYTHONPATH": str(ROOT)})

    def start(self) -> None:  # pragma: no cover - AzureStack launches it with its environment
        raise NotImplementedError("use launch(env)")


@dataclass
class AzureStack(Stack):
    """Start with ``with AzureStack() as stack:``; everything stops on exit."""

    container: str = field(default_factory=lambda: f"gray-{uuid.uuid4().hex[:8]}")
    api_port: int | None = None
    retry_delay: float | None = None
    """Seconds before a failed queue message is retried; None keeps host.json's visibilityTimeout."""
    lease: float | None = None
    """Seconds a message is hidden while its handler runs; None keeps the devhost's 300."""
    persistent: bool = False
    """Keep Azurite's data on disk, so that ``self.azurite.restart()`` loses nothing."""
    extra_env: dict[str, str] = field(default_factory=dict)
    azurite: Azurite | None = None
    devhost: DevHostProcess | None = None
    _stack: contextlib.ExitStack = field(default_factory=contextlib.ExitStack)

    @property
    def api_url(self) -> str:
        assert self.devhost is not None
        return self.devhost.api_url

    def env(self) -> dict[str, str]:
        """The app settings of the function app, which also point clients at Azurite."""
        assert self.azurite is not None
        return {
            **self.azurite.env(),
            "AzureWebJobsStorage": self.azurite.connection_string,
            "AZURE_STORAGE_CONTAINER": self.container,
            **self.extra_env,
        }

    def store(self) -> AzureBlobObjectStore:
        return AzureBlobObjectStore(self.container)

    def start(self) -> None:
        if self.azurite is None:  # else: an Azurite the caller started and stops
            self.azurite = self._stack.enter_context(Azurite(persistent=self.persistent))
        with environment(self.env()):
            self.store().create_container()
        port = self.api_port or (DEVHOST_PORT if port_is_free(DEVHOST_PORT) else free_port())
        self.devhost = DevHostProcess(port)
        self._stack.callback(self.devhost.stop)
        self.devhost.launch(self.env(), self.retry_delay, self.lease)
        with urllib.request.urlopen(self.api_url + "/", timeout=10):
            pass

    def kill_host(self) -> None:
        """SIGKILL the devhost, as a dying Functions instance."""
        assert self.devhost is not None and self.devhost.proc is not None
        os.killpg(self.devhost.proc.pid, signal.SIGKILL)
        self.devhost.proc.wait()

    def restart_host(self) -> None:
        """A new devhost on the same port."""
        assert self.devhost is not None
        self.devhost.stop()
        self.devhost.launch(self.env(), self.retry_delay, self.lease)

    def describe(self) -> dict[str, object]:
        """The Azure half of ``.dev/stack.json``."""
        assert self.azurite is not None
        return {
            "azure_api": self.api_url,
            "azure_connection_string": self.azurite.connection_string,
            "azure_container": self.container,
        }
