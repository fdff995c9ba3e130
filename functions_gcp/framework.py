"""functions-framework's decorators, applied only where the framework runs (it is imported before our code).

Under ``functions-framework`` (and its ``create_app`` test client) the framework
is already loaded when it imports ``main.py``, so the decorators register each
function's signature type as usual. Elsewhere (a plain ``import main``) the
functions stay plain functions and nobody pays the 0.3 s import of the
framework and Flask that a cold start would otherwise count twice.

Both decorators also attach the request's trace to every log line of the call:
``traceparent`` of a CloudEvent, ``X-Cloud-Trace-Context`` of an HTTP request.
"""

from __future__ import annotations

import functools
import sys
import urllib.parse
from collections.abc import Callable
from typing import Any, TypeVar

from core import logs

F = TypeVar("F", bound=Callable[..., Any])


def _traced(function: F, header: Callable[[Any], str | None]) -> F:
    @functools.wraps(function)
    def traced(arg: Any) -> Any:
        with logs.context(trace=logs.trace_from_header(header(arg))):
            return function(arg)

    return traced  # type: ignore[return-value]


def cloud_event(function: F) -> F:
    """``@functions_framework.cloud_event`` when the framework is running; the event's trace in the logs."""
    traced = _traced(function, lambda event: event.get("traceparent"))
    framework = sys.modules.get("functions_framework")
    return framework.cloud_event(traced) if framework else traced  # type: ignore[no-any-return]


def neutral_request(request: Any) -> Any:
    """``core.http_api.Request`` from a Flask request."""
    from core import http_api

    # The raw path (gunicorn's RAW_URI, werkzeug's REQUEST_URI), decoded as the Azure host does: werkzeug's own
    # ``request.path`` decodes ``%2F`` into a segment separator, so the two clouds would route it apart.
    raw = (request.environ.get("RAW_URI") or request.environ.get("REQUEST_URI") or "").split("?", 1)[0]
    raw = raw.removeprefix(request.environ.get("SCRIPT_NAME") or "")
    path = http_api.decoded_path(raw)
    if urllib.parse.unquote(path) != request.path:  # not the same request line (a proxy rewrote it): as given
        path = request.path
    return http_api.Request(
        method=request.method,
        path=path,
        headers=dict(request.headers),
        body=request.stream,
        base_url=request.url_root.rstrip("/"),
        query=request.args.to_dict(),
    )


def flask_response(answer: Any) -> Any:
    """A Flask response from a ``core.http_api.Response``."""
    import flask  # loaded already by the framework that calls this

    return flask.Response(answer.body, status=answer.status, headers=answer.headers)


def http(function: F) -> F:
    """``@functions_framework.http`` when the framework is running; the request's trace in the logs."""
    traced = _traced(function, lambda request: request.headers.get("X-Cloud-Trace-Context"))
    framework = sys.modules.get("functions_framework")
    return framework.http(traced) if framework else traced  # type: ignore[no-any-return]
