"""``DevHost``: ``function_app.app``'s functions, read once, driven by HTTP, queues and blob events."""

from __future__ import annotations

import argparse
import dataclasses
import functools
import importlib
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import ThreadingHTTPServer

import azure.functions as func

from functions_azure.devhost.blobs import WEBHOOK_PATH, BlobEvents, BlobTrigger
from functions_azure.devhost.http import HttpFront, Keys, Route, server
from functions_azure.devhost.queues import Handler, QueueTriggers
from functions_azure.devhost.settings import ROOT, HostSettings, resolve
from functions_azure.services import share_host_storage
from functions_azure.settings import CONNECTION, CONTAINER_SETTING, DEFAULT_CONTAINER, HOST_CONNECTION

log = logging.getLogger("devhost")


@dataclass
class Bindings:
    routes: list[Route] = field(default_factory=list)
    queues: dict[str, tuple[str, Handler]] = field(default_factory=dict)
    """Queue name -> (function, handler)."""
    blobs: list[BlobTrigger] = field(default_factory=list)


def read_bindings(app: func.FunctionApp) -> Bindings:
    """What each function is triggered by, from ``app.get_functions()`` (call once per process)."""
    found = Bindings()
    for function in app.get_functions():
        name, handler = str(function.get_function_name()), function.get_user_function()
        trigger = function.get_trigger().get_dict_repr()
        kind = trigger["type"]
        if kind == "httpTrigger":
            methods = {str(getattr(m, "value", m)).upper() for m in trigger.get("methods") or []}
            level = str(getattr(trigger.get("authLevel"), "value", trigger.get("authLevel") or "function")).lower()
            route = Route(name, str(trigger.get("route") or name), methods or {"GET", "POST"}, handler, level)
            found.routes.append(route)
        elif kind == "queueTrigger":
            found.queues[resolve(trigger["queueName"])] = (name, handler)
        elif kind == "blobTrigger":
            container, _, pattern = resolve(trigger["path"]).partition("/")
            connection = trigger.get("connection") or CONNECTION
            found.blobs.append(BlobTrigger(name, container, pattern.split("{", 1)[0], connection, handler))
        else:
            log.warning("function %s has a %s trigger, which this devhost does not drive", name, kind)
    found.routes.sort(key=lambda r: (r.catch_all, -len(r.template)))
    return found


class DevHost:
    def __init__(
        self,
        app: func.FunctionApp,
        *,
        port: int = 7071,
        host: str = "127.0.0.1",
        settings: HostSettings | None = None,
        keys: Keys | None = None,
    ) -> None:
        self.settings = settings or HostSettings.load()
        self.bindings = read_bindings(app)
        self.port, self.host = port, host
        self.stopping = threading.Event()
        self.queues = QueueTriggers(self.settings, self.stopping)
        self.blobs = BlobEvents(self.bindings.blobs)
        self.http = HttpFront(
            self.bindings.routes, self.settings.route_prefix, {WEBHOOK_PATH: self.blobs.webhook}, keys=keys
        )
        self.threads: list[threading.Thread] = []
        self.server: ThreadingHTTPServer | None = None

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}/{self.settings.route_prefix}"

    def start(self, timeout: float = 60) -> None:
        """Start the triggers, then the HTTP server: once the port answers, every trigger is live."""
        ready: list[threading.Event] = []
        for queue, (name, handler) in self.bindings.queues.items():
            ready.append(threading.Event())
            self._thread(functools.partial(self.queues.drain, queue, name, handler, ready[-1]), f"queue-{queue}")
        for event in ready:
            if not event.wait(timeout):
                raise RuntimeError("a trigger did not start: is the storage account reachable?")
        self.server = server(self.http.dispatch, self.host, self.port)
        self.port = self.server.server_address[1]
        self.http.origin = f"http://{self.host}:{self.port}"
        self._thread(self.server.serve_forever, "http")

    def stop(self, timeout: float = 1.5) -> None:
        """Stop taking work; wait at most ``timeout`` seconds in all for handlers running (daemon threads: an
        unfinished one is abandoned, and its message's lease lets it run again)."""
        self.stopping.set()
        deadline = time.monotonic() + timeout
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
        for thread in self.threads:
            thread.join(timeout=max(0.0, deadline - time.monotonic()))

    def _thread(self, target: Callable[[], None], name: str) -> None:
        thread = threading.Thread(target=target, name=name, daemon=True)
        thread.start()
        self.threads.append(thread)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m functions_azure.devhost",
        description="Run function_app.py locally against Azurite (or any storage account).",
    )
    parser.add_argument("--port", type=int, default=int(os.environ.get("FUNCTIONS_HTTPWORKER_PORT", 7071)))
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--app", default="function_app", help="module holding `app` (default: function_app)")
    parser.add_argument(
        "--retry-delay",
        type=float,
        default=None,
        help="seconds before a failed queue message is retried (default: host.json's visibilityTimeout)",
    )
    parser.add_argument(
        "--lease", type=float, default=None, help="seconds a message is hidden while its handler runs (default 300)"
    )
    parser.add_argument(
        "--keys",
        default=None,
        help='JSON file {"host": [KEY], "functions": {NAME: [KEY]}}: enforce auth levels as Azure does (default: none)',
    )
    args = parser.parse_args(argv)
    if not (os.environ.get(CONNECTION) or os.environ.get(HOST_CONNECTION)):
        print(f"set {HOST_CONNECTION} (UseDevelopmentStorage=true for Azurite on its default ports)", file=sys.stderr)
        return 2
    os.environ.setdefault(CONTAINER_SETTING, DEFAULT_CONTAINER)
    share_host_storage()
    from core import logs

    logs.configure()
    settings = HostSettings.load()
    if args.retry_delay is not None:
        settings = dataclasses.replace(settings, visibility_timeout=args.retry_delay)
    # Load the app as the Functions host does: by its file name at the project root.
    sys.path.insert(0, str(ROOT))
    app = importlib.import_module(args.app).app
    host = DevHost(
        app, port=args.port, host=args.host, settings=settings, keys=Keys.load(args.keys) if args.keys else None
    )
    if args.lease is not None:
        host.queues.lease_seconds = args.lease
    host.start()
    routes = ", ".join(
        f"{'/'.join(sorted(r.methods))} /{settings.route_prefix}/{r.template}" for r in host.bindings.routes
    )
    print(f"devhost on {host.base_url}: {routes}; queues {', '.join(host.bindings.queues)}", flush=True)
    stop = threading.Event()
    for number in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(number, lambda *_: stop.set())
    try:
        # Short sleeps, not pause(): a signal the kernel hands to another thread wakes nothing, and Python runs
        # its handler in the main thread only when that thread runs again.
        while not stop.is_set():
            time.sleep(0.2)
    finally:
        host.stop()
    return 0
