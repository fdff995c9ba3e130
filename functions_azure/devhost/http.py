"""The devhost's HTTP front: the app's routes under the route prefix, and the host's webhooks.

Bodies are read as the Functions host reads them: by ``Content-Length`` or with
``Transfer-Encoding: chunked``, up to the host's 100 MB limit; a larger body is
answered 413 by the host itself, before any function runs.
"""

from __future__ import annotations

import json
import logging
import re
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import IO, Any

import azure.functions as func

from core import http_api

log = logging.getLogger("devhost")
MAX_BODY_BYTES = 100 * 1024 * 1024  # the host's own limit on HTTP request bodies
TOO_LARGE = b'{"error": "payload_too_large", "message": "the request body is over the host\'s 100 MB limit"}'

Answer = tuple[int, dict[str, str], bytes]
Webhook = Callable[[dict[str, str], dict[str, str], bytes], tuple[int, bytes]]


class BodyTooLarge(Exception):
    """The body is over ``MAX_BODY_BYTES``."""


def read_body(headers: dict[str, str], stream: IO[bytes], limit: int = MAX_BODY_BYTES) -> bytes:
    """The request body, by Content-Length or chunked; ``BodyTooLarge`` as soon as it is over ``limit``."""
    lowered = {k.lower(): v for k, v in headers.items()}
    if "chunked" in lowered.get("transfer-encoding", "").lower():
        body = bytearray()
        while True:
            size = int(stream.readline(1024).split(b";", 1)[0].strip() or b"0", 16)
            if size == 0:
                while stream.readline(1024) not in (b"\r\n", b"\n", b""):  # trailers
                    pass
                return bytes(body)
            if len(body) + size > limit:
                raise BodyTooLarge
            body += stream.read(size)
            stream.readline(1024)  # the CRLF after each chunk
    length = int(lowered.get("content-length") or 0)
    if length > limit:
        raise BodyTooLarge
    return stream.read(length) if length else b""


@dataclass
class Route:
    name: str
    template: str
    methods: set[str]
    handler: Callable[[func.HttpRequest], func.HttpResponse]
    auth_level: str = "anonymous"
    """``anonymous``, ``function`` or ``admin``, as the trigger says (enforced only when the host has keys)."""
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
        self.pattern = re.compile(f"^{regex}$", re.IGNORECASE)  # the host matches routes case-insensitively

    @property
    def catch_all(self) -> bool:
        return "{*" in self.template


@dataclass(frozen=True)
class Keys:
    """The keys a host checks, as on Azure: a host key opens every FUNCTION route; a function's keys open only it.

    Read from a JSON file ``{"host": ["KEY"], "functions": {"NAME": ["KEY"]}}`` (``--keys``); sent as the
    ``x-functions-key`` header or the ``code`` query parameter.
    """

    host: frozenset[str] = frozenset()
    functions: dict[str, frozenset[str]] = field(default_factory=dict)

    @classmethod
    def load(cls, path: str) -> Keys:
        raw = json.loads(Path(path).read_text())
        functions = {name: frozenset(keys) for name, keys in (raw.get("functions") or {}).items()}
        return cls(frozenset(raw.get("host") or ()), functions)

    def opens(self, route: Route, presented: str) -> bool:
        if route.auth_level == "anonymous":
            return True
        if not presented:
            return False
        if presented in self.host:
            return True
        return route.auth_level == "function" and presented in self.functions.get(route.name, frozenset())


@dataclass
class HttpFront:
    """Dispatches a request to the host's webhooks (by path) or to the first route that matches."""

    routes: list[Route]
    route_prefix: str
    webhooks: dict[str, Webhook] = field(default_factory=dict)
    """Path -> handler of a POST, e.g. ``/runtime/webhooks/blobs``."""
    origin: str = "http://127.0.0.1:7071"
    keys: Keys | None = None
    """With keys, FUNCTION and ADMIN routes need one (401 without), as on Azure; without, none (as ``func start``)."""

    def dispatch(self, method: str, raw_path: str, headers: dict[str, str], body: bytes) -> Answer:
        split = urllib.parse.urlsplit(raw_path)
        webhook = self.webhooks.get(split.path)
        if webhook is not None and method.upper() == "POST":
            status, answer = webhook(dict(urllib.parse.parse_qsl(split.query)), headers, body)
            return status, {"Content-Type": "application/json"}, answer
        prefix = "/" + self.route_prefix
        if not (split.path == prefix or split.path.startswith(prefix + "/")):
            return 404, {}, b""
        relative = http_api.decoded_path(split.path[len(prefix) + 1 :])
        query = dict(urllib.parse.parse_qsl(split.query))
        for route in self.routes:
            match = route.pattern.match(relative)
            if match and method.upper() in route.methods:
                presented = {k.lower(): v for k, v in headers.items()}.get("x-functions-key") or query.get("code", "")
                if self.keys is not None and not self.keys.opens(route, presented):
                    return 401, {}, b""
                request = func.HttpRequest(
                    method.upper(),
                    f"{self.origin}{raw_path}",
                    headers=headers,
                    params=query,
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


class _Server(ThreadingHTTPServer):
    # The default backlog of 5 resets connections under a burst of uploads (found by tests/reliability).
    request_queue_size = 256
    daemon_threads = True


def server(dispatch: Callable[[str, str, dict[str, str], bytes], Answer], host: str, port: int) -> ThreadingHTTPServer:
    """An HTTP/1.1 server on ``host:port`` (0: a free port) that answers every request with ``dispatch``."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _any(self) -> None:
            try:
                body = read_body(dict(self.headers), self.rfile)
                status, headers, answer = dispatch(self.command, self.path, dict(self.headers), body)
            except BodyTooLarge:
                self.close_connection = True  # the rest of the body is never read
                status, headers, answer = 413, {"Content-Type": "application/json"}, TOO_LARGE
            except ValueError:  # a chunk size that is not hex
                self.close_connection = True
                status, headers, answer = 400, {}, b""
            self.send_response(status)
            for key, value in headers.items():
                if key.lower() not in ("content-length", "transfer-encoding", "connection"):
                    self.send_header(key, value)
            self.send_header("Content-Length", str(len(answer)))
            if self.close_connection:
                self.send_header("Connection", "close")
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(answer)

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _any

        def log_message(self, format: str, *args: Any) -> None:
            log.debug("%s %s", self.address_string(), format % args)

    return _Server((host, port), Handler)
