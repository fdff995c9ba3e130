"""A small local Functions host: ``python -m functions_azure.devhost [--port 7071]``.

Azure Functions Core Tools (``func start``) cannot be installed everywhere, so
this dispatcher drives the real handlers of ``function_app.py`` the way the
host does, against the storage account in ``AzureWebJobsStorage`` (Azurite):

- HTTP: every ``route`` is served on ``http://127.0.0.1:PORT/api/...`` by a real
  HTTP server, as ``func.HttpRequest`` objects. No function key is required
  locally, as with ``func start``.
- Queues: each ``queue_trigger`` queue is drained as the host does. A message
  is leased while its handler runs; on success it is deleted; on failure it
  becomes visible again after host.json's ``visibilityTimeout``; once its
  ``dequeue_count`` reaches ``maxDequeueCount`` a failure moves it to
  ``<queue>-poison``. Up to ``batchSize`` messages run at once.
- Blobs: a blob trigger with ``source=EventGrid`` is driven as the host does: by
  ``Microsoft.Storage.BlobCreated`` events posted (Event Grid schema) to the blobs
  extension webhook, ``POST /runtime/webhooks/blobs?functionName=Host.Functions.NAME``,
  which also answers Event Grid's subscription-validation handshake. A handler
  that fails answers 500, so Event Grid retries. The trigger gets what the
  Python worker gives it: an SDK-type client (no bytes read), or an
  ``InputStream``. Locally ``devstack.eventgrid`` posts the events, as soon as a
  blob is committed to Azurite; nothing here lists a container.

``app.get_functions()`` is called once per process, here at start-up.
"""

from __future__ import annotations

import argparse
import functools
import importlib
import json
import logging
import os
import re
import signal
import sys
import threading
import time
import types
import typing
import urllib.parse
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import azure.functions as func
from azurefunctions.extensions.base import Datum
from azurefunctions.extensions.bindings.blob.blobClientConverter import BlobClientConverter

from core.clouds.azure_blob import AzureBlobObjectStore
from core.clouds.azure_queue import AzureQueueTaskQueue, Received
from core.errors import CoreError, NotFound
from functions_azure.services import share_host_storage
from functions_azure.settings import CONNECTION, CONTAINER_SETTING, DEFAULT_CONTAINER

log = logging.getLogger("devhost")
ROOT = Path(__file__).resolve().parent.parent
MAX_BODY_BYTES = 100 * 1024 * 1024  # the host's own limit on HTTP request bodies


def host_settings(path: Path = ROOT / "host.json") -> dict[str, Any]:
    """The queue settings of host.json, with the host's defaults, times in seconds.

    As on the real host, an app setting ``AzureFunctionsJobHost__extensions__queues__NAME``
    overrides host.json's ``NAME`` (local settings use it for a short polling interval;
    host.json, which ships, keeps the production value).
    """
    queues = dict(json.loads(path.read_text()).get("extensions", {}).get("queues", {}))
    prefix = "AzureFunctionsJobHost__extensions__queues__"
    queues.update({k[len(prefix) :]: v for k, v in os.environ.items() if k.startswith(prefix) and v.strip()})
    return {
        "max_dequeue_count": int(queues.get("maxDequeueCount", 5)),
        "visibility_timeout": _seconds(queues.get("visibilityTimeout", "00:00:00")),
        "batch_size": int(queues.get("batchSize", 16)),
        "new_batch_threshold": int(queues.get("newBatchThreshold", int(queues.get("batchSize", 16)) // 2)),
        "max_polling_interval": _seconds(queues.get("maxPollingInterval", "00:01:00")),
        "message_encoding": queues.get("messageEncoding", "base64"),
        "route_prefix": json.loads(path.read_text()).get("extensions", {}).get("http", {}).get("routePrefix", "api"),
    }


def _seconds(span: str) -> float:
    hours, minutes, seconds = span.split(":")
    return timedelta(hours=int(hours), minutes=int(minutes), seconds=float(seconds)).total_seconds()


def resolve(template: str) -> str:
    """Replace ``%SETTING%`` binding expressions with app settings (environment variables)."""
    return re.sub(r"%([A-Za-z0-9_]+)%", lambda m: os.environ.get(m.group(1), ""), template)


@dataclass
class Route:
    name: str
    template: str
    methods: set[str]
    handler: Callable[[func.HttpRequest], func.HttpResponse]
    pattern: re.Pattern[str] = field(init=False)

    def __post_init__(self) -> None:
        regex = ""
        for part in re.split(r"(\{[^}]+\})", self.template):
            if part.startswith("{*"):
                regex += f"(?P<{part[2:-1]}>.*)"
            elif part.startswith("{"):
                regex += f"(?P<{part[1:-1].split(':')[0]}>[^/]+)"
            else:
                regex += re.escape(part)
        self.pattern = re.compile(f"^{regex}$")

    @property
    def catch_all(self) -> bool:
        return "{*" in self.template


@dataclass
class Bindings:
    routes: list[Route] = field(default_factory=list)
    queues: dict[str, tuple[str, Callable[[func.QueueMessage], None]]] = field(default_factory=dict)
    blobs: list[tuple[str, str, str, str, Callable[[Any], None]]] = field(default_factory=list)
    """(function, container, key prefix, connection setting, handler)."""


def read_bindings(app: func.FunctionApp) -> Bindings:
    """What each function is triggered by, from ``app.get_functions()`` (call once per process)."""
    found = Bindings()
    for function in app.get_functions():
        name, handler = function.get_function_name(), function.get_user_function()
        trigger = function.get_trigger().get_dict_repr()
        kind = trigger["type"]
        if kind == "httpTrigger":
            methods = {str(getattr(m, "value", m)).upper() for m in trigger.get("methods") or []}
            found.routes.append(Route(name, trigger.get("route") or name, methods or {"GET", "POST"}, handler))
        elif kind == "queueTrigger":
            found.queues[resolve(trigger["queueName"])] = (name, handler)
        elif kind == "blobTrigger":
            container, _, pattern = resolve(trigger["path"]).partition("/")
            prefix = pattern.split("{", 1)[0]
            found.blobs.append((name, container, prefix, trigger.get("connection") or "AzureWebJobsStorage", handler))
        else:
            log.warning("function %s has a %s trigger, which this devhost does not drive", name, kind)
    found.routes.sort(key=lambda r: (r.catch_all, -len(r.template)))
    return found


class DevHost:
    def __init__(self, app: func.FunctionApp, *, port: int = 7071, host: str = "127.0.0.1") -> None:
        self.settings = host_settings()
        self.bindings = read_bindings(app)
        self.port, self.host = port, host
        self.stopping = threading.Event()
        self.lease_seconds = 300.0
        """How long a message stays hidden while its handler runs (the host renews its own; a dead host's
        messages reappear after this)."""
        self.threads: list[threading.Thread] = []
        self.server: ThreadingHTTPServer | None = None
        self.blob_store: Callable[[str], Any] = AzureBlobObjectStore
        """The store a blob trigger's container is read from (tests pass a fake)."""

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}/{self.settings['route_prefix']}"

    def start(self, timeout: float = 60) -> None:
        """Start the triggers, then the HTTP server: once the port answers, every trigger is live."""
        ready: list[threading.Event] = []
        for queue, (name, handler) in self.bindings.queues.items():
            ready.append(threading.Event())
            self._thread(functools.partial(self._drain, queue, name, handler, ready[-1]), f"queue-{queue}")
        for event in ready:
            if not event.wait(timeout):
                raise RuntimeError("a trigger did not start: is the storage account reachable?")
        self.server = _Server((self.host, self.port), self._handler_class())
        self.port = self.server.server_address[1]
        self._thread(self.server.serve_forever, "http")

    def stop(self) -> None:
        self.stopping.set()
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
        for thread in self.threads:
            thread.join(timeout=10)

    def _thread(self, target: Callable[[], None], name: str) -> None:
        thread = threading.Thread(target=target, name=name, daemon=True)
        thread.start()
        self.threads.append(thread)

    # HTTP ----------------------------------------------------------------------------------------

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        host = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _any(self) -> None:
                status, headers, body = host.dispatch_http(self.command, self.path, dict(self.headers), self._body())
                self.send_response(status)
                for key, value in headers.items():
                    if key.lower() not in ("content-length", "transfer-encoding", "connection"):
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            def _body(self) -> bytes:
                length = int(self.headers.get("Content-Length") or 0)
                if length > MAX_BODY_BYTES:
                    self.close_connection = True
                    return b""
                return self.rfile.read(length) if length else b""

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _any

            def log_message(self, format: str, *args: Any) -> None:
                log.debug("%s %s", self.address_string(), format % args)

        return Handler

    def dispatch_http(
        self, method: str, raw_path: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, dict[str, str], bytes]:
        split = urllib.parse.urlsplit(raw_path)
        if split.path == "/runtime/webhooks/blobs" and method.upper() == "POST":
            status, answer = self.blob_webhook(dict(urllib.parse.parse_qsl(split.query)), headers, body)
            return status, {"Content-Type": "application/json"}, answer
        prefix = "/" + self.settings["route_prefix"]
        if not (split.path == prefix or split.path.startswith(prefix + "/")):
            return 404, {}, b""
        relative = urllib.parse.unquote(split.path[len(prefix) + 1 :])
        for route in self.bindings.routes:
            match = route.pattern.match(relative)
            if match and method.upper() in route.methods:
                request = func.HttpRequest(
                    method.upper(),
                    f"http://{self.host}:{self.port}{raw_path}",
                    headers=headers,
                    params=dict(urllib.parse.parse_qsl(split.query)),
                    route_params={k: v for k, v in match.groupdict().items() if v is not None},
                    body=body,
                )
                try:
                    response = route.handler(request)
                except Exception:
                    log.exception("function %s failed", route.name)
                    return 500, {}, b""
                return response.status_code, dict(response.headers), response.get_body() or b""
        return 404, {}, b""

    # Queues --------------------------------------------------------------------------------------

    def _drain(
        self, queue_name: str, name: str, handler: Callable[[func.QueueMessage], None], ready: threading.Event
    ) -> None:
        queue = AzureQueueTaskQueue(queue_name)
        poison = AzureQueueTaskQueue(f"{queue_name}-poison")
        self._retry(queue.create_queue)
        ready.set()
        idle = 0.1
        batch, threshold = self.settings["batch_size"], self.settings["new_batch_threshold"]
        # As the host: a new batch is fetched as soon as no more than newBatchThreshold messages are
        # still running, so up to batchSize + newBatchThreshold run at once; nobody waits for a whole batch.
        in_flight = [0]
        lock = threading.Condition()

        def run(message: Received) -> None:
            try:
                self._run_queue_message(queue, poison, name, handler, message)
            finally:
                with lock:
                    in_flight[0] -= 1
                    lock.notify_all()

        with ThreadPoolExecutor(max_workers=batch + threshold, thread_name_prefix=name) as pool:
            while not self.stopping.is_set():
                with lock:
                    if not lock.wait_for(lambda: in_flight[0] <= threshold, timeout=0.5):
                        continue  # still busy: look at the stopping flag, then wait again
                try:
                    messages = queue.receive(max_messages=batch, visibility_timeout=int(self.lease_seconds))
                except CoreError as exc:
                    log.warning("cannot read queue %s: %s", queue_name, exc)
                    messages = []
                if not messages:
                    self.stopping.wait(idle)
                    idle = min(idle * 2, self.settings["max_polling_interval"])
                    continue
                idle = 0.1
                with lock:
                    in_flight[0] += len(messages)
                for message in messages:
                    pool.submit(run, message)

    def _run_queue_message(
        self,
        queue: AzureQueueTaskQueue,
        poison: AzureQueueTaskQueue,
        name: str,
        handler: Callable[[func.QueueMessage], None],
        message: Received,
    ) -> None:
        from azure.functions.queue import QueueMessage

        incoming = QueueMessage(
            id=message.id,
            body=message.body,
            dequeue_count=message.dequeue_count,
            insertion_time=message.inserted,
            expiration_time=message.expires,
            pop_receipt=message.pop_receipt,
        )
        try:
            handler(incoming)
            failed: Exception | None = None
        except Exception as exc:
            failed = exc
        try:
            self._settle(queue, poison, name, message, failed)
        except CoreError as exc:
            # Storage unreachable: the message reappears when its lease ends, as on the real host.
            log.warning("%s: could not settle message %s, it returns after its lease: %s", name, message.id, exc)

    def _settle(
        self,
        queue: AzureQueueTaskQueue,
        poison: AzureQueueTaskQueue,
        name: str,
        message: Received,
        failed: Exception | None,
    ) -> None:
        """Delete a handled message; release a failed one for a retry, or move it to the poison queue."""
        if failed is None:
            queue.delete(message)
        elif message.dequeue_count >= self.settings["max_dequeue_count"]:
            log.warning("%s: message %s failed %d times, moved to %s-poison: %s",
                        name, message.id, message.dequeue_count, queue.queue_name, failed)  # fmt: skip
            poison.send_body(message.body)
            queue.delete(message)
        else:
            retry_in = self.settings["visibility_timeout"]
            log.info("%s: message %s failed (attempt %d), retried in %.0fs: %s",
                     name, message.id, message.dequeue_count, retry_in, failed)  # fmt: skip
            queue.release(message, visibility_timeout=int(retry_in))

    # Blobs: the Event Grid webhook of the blobs extension -----------------------------------------

    def blob_webhook(self, query: dict[str, str], headers: dict[str, str], body: bytes) -> tuple[int, bytes]:
        """``POST /runtime/webhooks/blobs?functionName=Host.Functions.NAME``: Event Grid's handshake, or its events."""
        name = query.get("functionName", "").removeprefix("Host.Functions.")
        binding = next((b for b in self.bindings.blobs if b[0] == name), None)
        if binding is None:
            return 404, json.dumps({"error": f"no blob trigger named {name!r}"}).encode()
        try:
            events = json.loads(body)
        except ValueError:
            return 400, b'{"error": "the body is not Event Grid JSON"}'
        if not isinstance(events, list):
            events = [events]
        kind = {k.lower(): v for k, v in headers.items()}.get("aeg-event-type", "Notification")
        if kind == "SubscriptionValidation":
            code = events[0].get("data", {}).get("validationCode") if events and isinstance(events[0], dict) else None
            return 200, json.dumps({"validationResponse": code}).encode()
        _, container, prefix, connection, handler = binding
        status = 200
        for event in events:
            if not isinstance(event, dict) or event.get("eventType") != "Microsoft.Storage.BlobCreated":
                continue
            subject = str(event.get("subject", ""))
            owner, _, key = subject.removeprefix("/blobServices/default/containers/").partition("/blobs/")
            if owner != container:
                continue
            if key.startswith(prefix) and not self._deliver_blob(name, container, key, connection, handler):
                status = 500  # Event Grid retries the delivery
        return status, b""

    def _deliver_blob(
        self, name: str, container: str, key: str, connection: str, handler: Callable[[Any], None]
    ) -> bool:
        """Call the trigger for one blob; False when it should be delivered again."""
        try:
            argument = blob_argument(handler, self.blob_store(container), connection, container, key)
        except NotFound:
            log.info("%s: %s vanished before delivery", name, key)
            return True
        except CoreError as exc:  # storage unreachable: Event Grid retries the delivery
            log.warning("%s: cannot read %s/%s: %s", name, container, key, exc)
            return False
        try:
            handler(argument)
        except Exception:
            log.exception("%s: the delivery of %s failed", name, key)
            return False
        return True

    def _retry(self, action: Callable[[], None]) -> None:
        for _ in range(50):
            try:
                action()
                return
            except CoreError:
                time.sleep(0.2)
        action()


def blob_argument(
    handler: Callable[[Any], None], store: AzureBlobObjectStore, connection: str, container: str, key: str
) -> Any:
    """What the Python worker passes a blob trigger: an SDK client, or the bytes as ``func.InputStream``.

    For an SDK-type parameter (``azurefunctions.extensions.bindings.blob``), the host
    sends model binding data (connection, container, blob name) and the extension's
    converter makes the client: no byte of the blob is read. ``NotFound`` if the blob is gone.
    """
    hints = [hint for name, hint in typing.get_type_hints(handler).items() if name != "return"]
    parameter = hints[0] if hints else None
    if isinstance(parameter, type) and BlobClientConverter.check_input_type_annotation(parameter):
        store.head(key)
        content = json.dumps({"Connection": connection, "ContainerName": container, "BlobName": key})
        binding = types.SimpleNamespace(
            version="1.0", source="AzureStorageBlobs", content_type="application/json", content=content
        )
        return BlobClientConverter.decode(Datum(binding, "model_binding_data"), trigger_metadata=None, pytype=parameter)
    data = store.get(key).data
    uri = f"devhost://{container}/{key}"
    return func.blob.InputStream(data=data, name=f"{container}/{key}", uri=uri, length=len(data))


class _Server(ThreadingHTTPServer):
    # The default backlog of 5 resets connections under a burst of uploads (found by tests/reliability).
    request_queue_size = 256
    daemon_threads = True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Run function_app.py locally against Azurite (or any storage account)."
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
    args = parser.parse_args(argv)
    if not os.environ.get(CONNECTION):
        print(f"set {CONNECTION} (UseDevelopmentStorage=true for Azurite on its default ports)", file=sys.stderr)
        return 2
    os.environ.setdefault(CONTAINER_SETTING, DEFAULT_CONTAINER)
    share_host_storage()
    from core import logs

    logs.configure()
    # Load the app as the Functions host does: by its file name at the project root.
    sys.path.insert(0, str(ROOT))
    app = importlib.import_module(args.app).app
    host = DevHost(app, port=args.port, host=args.host)
    if args.retry_delay is not None:
        host.settings["visibility_timeout"] = args.retry_delay
    if args.lease is not None:
        host.lease_seconds = args.lease
    host.start()
    routes = ", ".join(
        f"{'/'.join(sorted(r.methods))} /{host.settings['route_prefix']}/{r.template}" for r in host.bindings.routes
    )
    print(f"devhost on {host.base_url}: {routes}; queues {', '.join(host.bindings.queues)}", flush=True)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        while True:
            time.sleep(3600)
    except (KeyboardInterrupt, SystemExit):
        pass
    finally:
        host.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
