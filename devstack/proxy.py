"""A forwarding HTTP proxy in front of a local emulator, with a hook on every answered request.

``devstack.eventgrid`` builds Event Grid on it; ``bench/ops_per_job.py`` counts the
storage requests a job costs with it (``record=True`` keeps ``(method, path)`` of each).
"""

from __future__ import annotations

import http.client
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "proxy-connection", "upgrade", "te", "trailer"}


class ForwardingProxy:
    """``with ForwardingProxy(upstream_port) as proxy:``; clients use ``proxy.port``."""

    def __init__(self, upstream_port: int, *, host: str = "127.0.0.1", record: bool = False) -> None:
        self.upstream = (host, upstream_port)
        self.record = record
        self.requests: list[tuple[str, str]] = []
        """(method, path with query) of each forwarded request, when ``record``."""
        self._local = threading.local()
        self._log_lock = threading.Lock()
        self.server = _Server((host, 0), self._handler_class())
        self.port = self.server.server_address[1]
        self.url = f"http://{host}:{self.port}"
        self._thread = threading.Thread(target=self.server.serve_forever, name="proxy", daemon=True)

    def __enter__(self) -> ForwardingProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def take(self) -> list[tuple[str, str]]:
        """The recorded requests since the last ``take``."""
        with self._log_lock:
            found, self.requests = self.requests, []
        return found

    def observe(self, method: str, path: str, headers: dict[str, str], status: int, answer: dict[str, str]) -> None:
        """Called after each answered request (headers lower-cased in ``answer``); subclasses act on it."""

    def _upstream(self) -> http.client.HTTPConnection:
        connection = getattr(self._local, "connection", None)
        if connection is None:
            connection = http.client.HTTPConnection(*self.upstream, timeout=300)
            self._local.connection = connection
        return connection

    def forward(
        self, method: str, path: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, list[tuple[str, str]], bytes]:
        """Send one request on and return its answer; a broken kept-alive connection is retried once."""
        if self.record:
            with self._log_lock:
                self.requests.append((method, path))
        for attempt in (1, 2):
            connection = self._upstream()
            try:
                connection.request(method, path, body=body or None, headers=headers)
                response = connection.getresponse()
                data = response.read()
                return response.status, response.getheaders(), data
            except (OSError, http.client.HTTPException):
                connection.close()
                self._local.connection = None
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _any(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                if len(body) < length:
                    # The client went away mid-body (a killed worker): as on a real network, the
                    # request never reaches storage; forwarding the part would commit a truncated blob.
                    self.close_connection = True
                    return
                headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
                try:
                    status, answer, data = proxy.forward(self.command, self.path, headers, body)
                except ConnectionAbortedError:  # a subclass's way to drop the connection unanswered
                    self.close_connection = True
                    return
                except (OSError, http.client.HTTPException) as exc:
                    self.send_error(502, f"Azurite did not answer: {exc}")
                    return
                self.send_response(status)
                # A HEAD answer has no body but the Content-Length of the blob: pass it through as it is.
                keep_length = self.command == "HEAD"
                for key, value in answer:
                    if key.lower() not in _HOP_BY_HOP and (keep_length or key.lower() != "content-length"):
                        self.send_header(key, value)
                if not keep_length:
                    self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)
                proxy.observe(self.command, self.path, headers, status, {k.lower(): v for k, v in answer})

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = do_OPTIONS = do_PATCH = do_MERGE = _any

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler


class _Server(ThreadingHTTPServer):
    request_queue_size = 256
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that dies mid-request (a host killed by a test) resets its connection: not an error here.
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)
