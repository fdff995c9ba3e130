"""The HTTP API and the upload page, written once for both clouds.

Each cloud's HTTP function turns its framework's request into a ``Request``,
calls ``handle`` and turns the ``Response`` back, so routes, codes and JSON
bodies cannot drift apart. Paths are relative to the API base
(``http://127.0.0.1:8080`` on GCP, ``http://127.0.0.1:7071/api`` on Azure):

=======  ======================  ==========================================================
method   path                    answer
=======  ======================  ==========================================================
POST     /jobs                   raw image bytes, or multipart field ``file``: 202 + job +
                                 ``Location``; 400 empty; 413 over the cap; 415 not an image
GET      /jobs/{id}              200 job / 404
GET      /jobs/{id}/result       200 image bytes / 404 unknown / 409 not done (with status)
GET      /                       200 the upload page (text/html); ?view=migrations: the migration page's shell
=======  ======================  ==========================================================

Every error body is ``{"error": code, "message": sentence}``.
"""

from __future__ import annotations

import functools
import json
import logging
import re
import urllib.parse
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import IO, TYPE_CHECKING, Any

from core import config
from core.errors import (
    BadRequest,
    Conflict,
    CoreError,
    ImageTooLarge,
    InvalidImage,
    NotAllowed,
    NotFound,
    PayloadTooLarge,
    TransientError,
)
from core.jobs import Job, Status
from core.logs import redact_identities

if TYPE_CHECKING:
    from core.pipeline import Services

# The upload path's imports (the pipeline and Pillow, the email parser) load on the first upload:
# the page and the status answer a cold start without them.

log = logging.getLogger(__name__)

# Multipart framing (boundaries, part headers) allowed on top of the image cap.
MULTIPART_OVERHEAD = 64 * 1024
_JOB_PATH = re.compile(r"^/jobs/(?P<id>[^/]+)(?:(?P<result>/result)|(?P<retry>/retry))?/?$")


@dataclass(frozen=True)
class Request:
    """A framework-neutral HTTP request. ``path`` is relative to the API base."""

    method: str
    path: str
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes | IO[bytes] = b""
    base_url: str = ""
    """Absolute URL of the API base, without a trailing slash, for ``Location``."""
    query: Mapping[str, str] = field(default_factory=dict)

    def header(self, name: str, default: str = "") -> str:
        lowered = name.lower()
        for key, value in self.headers.items():
            if key.lower() == lowered:
                return value
        return default


@dataclass
class Response:
    """A framework-neutral HTTP response."""

    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def content_type(self) -> str:
        return self.headers.get("Content-Type", "")

    def json(self) -> Any:
        return json.loads(self.body)


def json_response(status: int, payload: Any, **headers: str) -> Response:
    body = json.dumps(payload, ensure_ascii=False).encode()
    return Response(status, body, {"Content-Type": "application/json; charset=utf-8", **headers})


def error_response(http_status: int, code: str, message: str, **extra: Any) -> Response:
    """The JSON error body every failure gets: ``{"error": code, "message": sentence, ...}``.

    The sentence is redacted as log lines are (an adapter's error may quote a URL or a connection string), and the
    deployment's accounts and ids are masked (a storage 403 names the service account).
    """
    return json_response(http_status, {"error": code, "message": redact_identities(message), **extra})


Route = tuple[str, "re.Pattern[str]", Callable[[Request, "re.Match[str]"], Response]]
"""(method, path pattern, handler): routes that layers above ``core`` add, such as the migration's."""


def handle(
    services: Services | Callable[[], Services],
    request: Request,
    routes: Sequence[Route] = (),
    *,
    pipeline: bool = True,
) -> Response:
    """Answer one request; never raises.

    ``services`` may be a callable that builds them (``LazyServices``): the page then
    answers without building any storage client, which a cold start would wait for.
    ``pipeline=False`` serves ``routes`` only (a function of its own, such as the migration control plane).
    """
    try:
        path = request.path or "/"
        allowed: list[str] = []
        for method, pattern, handler in routes:
            match = pattern.fullmatch(path)
            if match and method == request.method.upper():
                return handler(request, match)
            if match:
                allowed.append(method)
        if allowed:  # the path is a route's, for other methods (GET and POST /migrations are two routes)
            denied = _only(request.method.upper(), tuple(allowed))
            assert denied is not None
            return denied
        if not pipeline:
            return error_response(404, "not_found", f"no route for {request.method.upper()} {path}")
        return _route(services if callable(services) else lambda: services, request)
    except CoreError as exc:
        return _error_for(exc)
    except Exception:  # the last guard: a JSON 500, never a framework error page
        log.exception("unhandled error in %s %s", request.method, request.path)
        return error_response(500, "internal", "the server failed to answer; the error is in its log")


def decoded_path(raw: str) -> str:
    """A request path as both hosts match routes: each segment decoded once, an encoded ``/`` kept as ``%2F`` (it
    never makes a segment of its own, as in ASP.NET Core under the Functions host), nothing decoded twice."""
    return "/".join(urllib.parse.unquote(segment).replace("/", "%2F") for segment in raw.split("/"))


def _route(services: Callable[[], Services], request: Request) -> Response:
    method = request.method.upper()
    path = request.path or "/"
    if path in ("/", ""):
        return _only(method, ("GET",)) or page(request)
    if path.rstrip("/") == "/jobs":
        return _only(method, ("POST",)) or upload(services(), request)
    match = _JOB_PATH.match(path)
    if match and match["retry"]:
        return _only(method, ("POST",)) or retry(services(), match["id"], request)
    if match:
        denied = _only(method, ("GET",))
        if denied:
            return denied
        job = services().jobs.get(match["id"])
        return result(services(), job) if match["result"] else json_response(200, job.to_dict())
    return error_response(404, "not_found", f"no route for {method} {path}")


def _only(method: str, allowed: tuple[str, ...]) -> Response | None:
    if method in allowed:
        return None
    response = error_response(405, "method_not_allowed", f"use {' or '.join(allowed)} here, not {method}")
    response.headers["Allow"] = ", ".join(allowed)
    return response


def upload(services: Services, request: Request) -> Response:
    cap = config.max_upload_bytes()
    content_type = request.header("Content-Type")
    multipart = content_type.lower().startswith("multipart/form-data")
    raw = read_capped(request, cap + (MULTIPART_OVERHEAD if multipart else 0))
    filename = _disposition_filename(request.header("Content-Disposition"))
    if multipart:
        data, filename = form_file(content_type, raw)
    else:
        data = raw
    from core.pipeline import submit_upload

    job = submit_upload(services, data, filename=filename, max_bytes=cap)
    location = f"{request.base_url}/jobs/{job.id}"
    return json_response(202, job.to_dict(), Location=location)


def _disposition_filename(header: str) -> str | None:
    """The filename of a ``Content-Disposition: attachment; filename=...`` header, if any."""
    if not header:
        return None
    import email.parser
    import email.policy

    parsed = email.parser.HeaderParser(policy=email.policy.HTTP).parsestr(f"Content-Disposition: {header}\n\n")
    name = parsed.get_filename()
    return str(name) if name else None


def read_capped(request: Request, cap: int) -> bytes:
    """The body, read no further than ``cap`` bytes; ``PayloadTooLarge`` past that."""
    declared = request.header("Content-Length")
    if declared.isdigit() and int(declared) > cap:
        raise PayloadTooLarge(
            f"the body is {int(declared):,} bytes; the limit is {cap:,} ({config.MAX_UPLOAD_BYTES_VAR})"
        )
    body = request.body
    data = body[: cap + 1] if isinstance(body, bytes) else body.read(cap + 1)
    if len(data) > cap:
        raise PayloadTooLarge(f"the body is over the limit of {cap:,} bytes ({config.MAX_UPLOAD_BYTES_VAR})")
    return data


def form_file(content_type: str, body: bytes) -> tuple[bytes, str | None]:
    """The bytes and filename of the form field ``file`` in a multipart/form-data body."""
    import email.parser
    import email.policy

    parser = email.parser.BytesParser(policy=email.policy.HTTP)
    message = parser.parsebytes(b"Content-Type: " + content_type.encode("latin-1") + b"\r\n\r\n" + body)
    if not message.is_multipart():
        raise BadRequest("the multipart body could not be parsed: check its boundary")
    for part in message.iter_parts():
        if part.get_param("name", header="content-disposition") == "file":
            payload = part.get_payload(decode=True)
            return (payload if isinstance(payload, bytes) else b""), part.get_filename()
    raise BadRequest("the form has no field named 'file'")


def retry(services: Services, job_id: str, request: Request) -> Response:
    from core.pipeline import retry_job

    job, retried = retry_job(services, job_id)
    if not retried:
        message = f"job {job.id} is {job.status.value}: only a FAILED job can be retried"
        return error_response(409, "not_failed", message, status=job.status.value)
    return json_response(202, job.to_dict(), Location=f"{request.base_url}/jobs/{job.id}")


def result(services: Services, job: Job) -> Response:
    if job.status is not Status.DONE or not job.result:
        message = f"job {job.id} is {job.status.value}" + (f": {job.error}" if job.error else "; try again shortly")
        return error_response(409, "not_done", message, status=job.status.value)
    # The type follows the extension this service gave the key, never the stored header: a blob planted or
    # overwritten as text/html must not render on the API's origin.
    content_type = RESULT_TYPES.get(PurePosixPath(job.result).suffix.lower())
    if content_type is None:
        return error_response(500, "bad_result", f"job {job.id}'s result is not an image this service writes")
    stored = services.store.get(job.result)
    headers = {
        "Content-Type": content_type,
        "Cache-Control": "private, max-age=3600",
        "X-Content-Type-Options": "nosniff",
        "Content-Security-Policy": "sandbox",
    }
    return Response(200, stored.data, headers)


RESULT_TYPES = {
    ".jpg": "image/jpeg",
    ".png": "image/png",
    ".gif": "image/gif",
    ".webp": "image/webp",
    ".avif": "image/avif",
}
"""The result types this service writes, by extension (``core.imaging.EXTENSIONS``, not imported: the page and
the status answer without loading Pillow)."""


PAGES = Path(__file__).parent / "pages"
"""The pages: ``layout.html`` holds what they share; each page file is ``<!-- title: T; width: W -->``, then its
``<style>``, its body and its ``<script>``, inlined into the layout when served."""

_PAGE = re.compile(
    r"<!-- (?P<header>.*?) -->\n<style>\n(?P<style>.*?)</style>\n(?P<body>.*?)<script>\n(?P<script>.*)</script>\n", re.S
)


@functools.cache
def render_page(name: str) -> bytes:
    """The page ``core/pages/NAME.html`` inlined into the layout: one source for what the pages share."""
    found = _PAGE.fullmatch((PAGES / f"{name}.html").read_text())
    if found is None:
        raise ValueError(f"core/pages/{name}.html is not <!-- header -->, <style>, body, <script>")
    values = dict(part.split(": ", 1) for part in found["header"].split("; "))
    values.update({part: found[part].rstrip("\n") for part in ("style", "body", "script")})
    layout = (PAGES / "layout.html").read_text()
    return re.sub(r"\{\{(\w+)\}\}", lambda field: values[field[1]], layout).encode()


def html_page(name: str) -> Response:
    """One of the pages: never cached stale, never framed by another site."""
    headers = {
        "Content-Type": "text/html; charset=utf-8",
        "Cache-Control": "no-cache",
        "X-Content-Type-Options": "nosniff",
        "Content-Security-Policy": "frame-ancestors 'none'",
    }
    return Response(200, render_page(name), headers)


VIEWS = {"": "upload", "migrations": "migrations"}
"""``GET /?view=NAME``: the pages the page route serves. The migration page is a shell with no data in it, served
here too so that a browser on Azure can open it anonymously and send the operator's key from its fragment."""


def page(request: Request | None = None) -> Response:
    view = request.query.get("view", "") if request is not None else ""
    if view not in VIEWS:
        raise NotFound(f"no page {view!r}: try ?view=migrations, or no view for the upload page")
    return html_page(VIEWS[view])


_STATUS: list[tuple[type[CoreError], int]] = [
    (NotFound, 404),
    (ImageTooLarge, 413),
    (PayloadTooLarge, 413),
    (InvalidImage, 415),
    (NotAllowed, 403),
    (BadRequest, 400),
    (Conflict, 409),
    (TransientError, 503),
]


def _error_for(exc: CoreError) -> Response:
    for kind, status in _STATUS:
        if isinstance(exc, kind):
            response = error_response(status, exc.code, str(exc))
            if status == 503:
                response.headers["Retry-After"] = "5"
            return response
    log.error("unexpected core error: %r", exc)
    return error_response(500, exc.code, str(exc))
