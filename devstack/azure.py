"""The local Azure stack: Azurite and the devhost (``functions_azure.devhost``) running ``function_app.py``.

The devhost serves the HTTP routes on ``http://127.0.0.1:7071/api`` (or a free
port) and drains the Azurite queues into the queue triggers. Blob events come as
on Azure: ``devstack.eventgrid`` sits in front of Azurite's blob endpoint (the
stack's connection string points at it) and pushes ``BlobCreated`` for every
commit under ``uploads/`` to the devhost's blobs webhook, after Event Grid's
subscription handshake.
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
from devstack.emulators import HOST, ROOT, Azurite, _Process, free_port, preferred_port
from devstack.environment import Stack, environment
from devstack.eventgrid import EventGridProxy

DEVHOST_PORT = 7071


class DevHostProcess(_Process):
    """``python -m functions_azure.devhost`` for this project's ``function_app.py``."""

    name = "devhost"
    grace = 2.0

    def __init__(self, port: int | None = None, *, workdir: Path | None = None) -> None:
        super().__init__(workdir)
        self.port = port or free_port()

    @property
    def api_url(self) -> str:
        return f"http://{HOST}:{self.port}/api"

    def launch(
        self,
        env: dict[str, str],
        retry_delay: float | None = None,
        lease: float | None = None,
        keys: Path | None = None,
    ) -> None:
        argv = [sys.executable, "-m", "functions_azure.devhost", "--port", str(self.port), "--host", HOST]
        if keys is not None:
            argv += ["--keys", str(keys)]
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
    keys: Path | None = None
    """A keys file (``functions_azure.devhost --keys``): the devhost then enforces auth levels as Azure does."""
    extra_env: dict[str, str] = field(default_factory=dict)
    azurite: Azurite | None = None
    eventgrid: EventGridProxy | None = None
    """Event Grid in front of Azurite's blobs; made here unless the caller shares one (``devstack.stacks``)."""
    devhost: DevHostProcess | None = None
    note: str = ""
    """What the user should know: a default port that was taken, and by what."""
    _stack: contextlib.ExitStack = field(default_factory=contextlib.ExitStack)

    @property
    def api_url(self) -> str:
        assert self.devhost is not None
        return self.devhost.api_url

    @property
    def connection_string(self) -> str:
        """Azurite, with blobs reached through Event Grid's proxy (so that commits raise events)."""
        assert self.azurite is not None and self.eventgrid is not None
        return self.azurite.connection_string_via(self.eventgrid.port)

    def env(self) -> dict[str, str]:
        """The app settings of the function app, which also point clients at Azurite."""
        return {
            "AZURE_STORAGE_CONNECTION_STRING": self.connection_string,
            "AzureWebJobsStorage": self.connection_string,
            "DataStorage": self.connection_string,  # the data connection: deployed, an identity of its own
            # As local.settings.json.example: a short queue polling interval locally; host.json keeps 2 s.
            "AzureFunctionsJobHost__extensions__queues__maxPollingInterval": "00:00:00.100",
            "AZURE_STORAGE_CONTAINER": self.container,
            **self.extra_env,
        }

    def store(self) -> AzureBlobObjectStore:
        return AzureBlobObjectStore(self.container)

    def start(self) -> None:
        if self.azurite is None:  # else: an Azurite the caller started and stops
            self.azurite = self._stack.enter_context(Azurite(persistent=self.persistent))
        if self.eventgrid is None:
            self.eventgrid = self._stack.enter_context(EventGridProxy(self.azurite.blob_port))
        with environment(self.env()):
            self.store().create_container()
        port = self.api_port
        if port is None:
            port, self.note = preferred_port(DEVHOST_PORT, "the Azure API")
        self.devhost = DevHostProcess(port)
        self._stack.callback(self.devhost.stop)
        self.devhost.launch(self.env(), self.retry_delay, self.lease, self.keys)
        with urllib.request.urlopen(self.api_url + "/", timeout=10):
            pass
        # As deploy/azure.py subscribes on Azure: BlobCreated under uploads/, to the blobs extension webhook.
        self.eventgrid.subscribe(
            f"http://{HOST}:{self.devhost.port}/runtime/webhooks/blobs?functionName=Host.Functions.on_upload",
            subject_begins_with=f"/blobServices/default/containers/{self.container}/blobs/uploads/",
        )

    def kill_host(self) -> None:
        """SIGKILL the devhost, as a dying Functions instance."""
        assert self.devhost is not None and self.devhost.proc is not None
        os.killpg(self.devhost.proc.pid, signal.SIGKILL)
        self.devhost.proc.wait()

    def restart_host(self) -> None:
        """A new devhost on the same port."""
        assert self.devhost is not None
        self.devhost.stop()
        self.devhost.launch(self.env(), self.retry_delay, self.lease, self.keys)

    def describe(self) -> dict[str, object]:
        """The Azure half of ``.dev/stack.json``."""
        assert self.azurite is not None
        return {
            "azure_api": self.api_url,
            "azure_connection_string": self.connection_string,
            "azure_container": self.container,
        }
