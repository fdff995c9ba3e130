"""Structured logs: one JSON object per line on stdout, in Cloud Logging's format.

Both clouds use it (Azure Functions forwards stdout lines to its logs as they are).

Each line has ``severity``, ``message`` and, when known, ``job_id`` and
``logging.googleapis.com/trace``. Anything that looks like a credential
(an account key, a SAS signature, a bearer token, a private key) is masked.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import os
import re
import sys
from collections.abc import Iterator
from typing import Any

_job_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("job_id", default=None)
_trace: contextvars.ContextVar[str | None] = contextvars.ContextVar("trace", default=None)

_SECRETS = [
    (re.compile(r"(AccountKey=)[^;\s\"']+", re.I), r"\1***"),
    (re.compile(r"(SharedAccessSignature=)[^;\s\"']+", re.I), r"\1***"),
    (re.compile(r"([?&]sig=)[^&\s\"']+", re.I), r"\1***"),
    (re.compile(r"(X-Goog-Signature=)[0-9a-f]+", re.I), r"\1***"),
    (re.compile(r"(Bearer\s+)[A-Za-z0-9._~+/=-]+", re.I), r"\1***"),
    (re.compile(r"(\"private_key\"\s*:\s*\")[^\"]+", re.I), r"\1***"),
    (re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----.*?-----END [A-Z ]*PRIVATE KEY-----", re.S), "***private key***"),
    # The query of any URL or path (urllib3 quotes "url: /container/blob?sv=...&sig=..." in its errors): a SAS
    # or a signed URL's signature lives there, and no error needs it.
    (re.compile(r"((?:[a-z][a-z0-9+.-]*://|(?<![\w.])/)[^\s?\"'<>]*)\?[^\s\"'<>()]+", re.I), r"\1?***"),
]


def redact(text: str) -> str:
    """Mask credentials in ``text``, and the query of every URL in it.

    Whatever is stored (a job's error, a run's or a batch's errors) or served passes through here."""
    for pattern, replacement in _SECRETS:
        text = pattern.sub(replacement, text)
    return text


_IDENTITIES = [
    (re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+"), "<an account>"),  # service-account and user emails
    (re.compile(r"\b[0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}\b"), "<an id>"),  # tenant, client, object ids
]


def redact_identities(text: str) -> str:
    """``redact``, and the accounts and ids of the deployment masked too: for what callers see (error bodies, job
    records), where a storage error's text names the service account or the tenant. Log lines keep them."""
    text = redact(text)
    for pattern, replacement in _IDENTITIES:
        text = pattern.sub(replacement, text)
    return text


class CloudLoggingFormatter(logging.Formatter):
    """Formats a record as one Cloud Logging JSON line."""

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        if record.exc_info:
            message = f"{message}\n{self.formatException(record.exc_info)}"
        entry: dict[str, Any] = {
            "severity": _SEVERITY.get(record.levelno, "DEFAULT"),
            "message": redact(message),
            "logger": record.name,
        }
        job_id = getattr(record, "job_id", None) or _job_id.get()
        if job_id:
            entry["job_id"] = job_id
        trace = _trace.get()
        if trace:
            entry["logging.googleapis.com/trace"] = trace
        return json.dumps(entry, ensure_ascii=False)


_SEVERITY = {
    logging.DEBUG: "DEBUG",
    logging.INFO: "INFO",
    logging.WARNING: "WARNING",
    logging.ERROR: "ERROR",
    logging.CRITICAL: "CRITICAL",
}


def configure(level: int = logging.INFO) -> None:
    """Send the root logger's records to stdout as Cloud Logging JSON (once per process)."""
    root = logging.getLogger()
    if any(isinstance(h.formatter, CloudLoggingFormatter) for h in root.handlers):
        return
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(CloudLoggingFormatter())
    root.addHandler(handler)
    root.setLevel(level)
    # The SDKs log every HTTP request at INFO; keep their warnings only.
    for noisy in ("azure", "google", "urllib3"):
        logging.getLogger(noisy).setLevel(max(level, logging.WARNING))


class RedactingFormatter(logging.Formatter):
    """A plain ``LEVEL logger: message`` line, redacted (a CLI's stderr)."""

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


class _CurrentStderr(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever ``sys.stderr`` is when a record comes (a test swaps it)."""

    @property
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, _value: Any) -> None:
        pass


def configure_cli(level: int = logging.WARNING) -> None:
    """Send warnings (urllib3's retries, which quote a SAS URL) to stderr redacted, once per process.

    Without a handler Python prints them as they are, through its last-resort handler.
    """
    root = logging.getLogger()
    if any(isinstance(h.formatter, (CloudLoggingFormatter, RedactingFormatter)) for h in root.handlers):
        return
    handler = _CurrentStderr()
    handler.setFormatter(RedactingFormatter("%(levelname)s %(name)s: %(message)s"))
    handler.setLevel(level)
    root.addHandler(handler)


def trace_from_header(header: str | None) -> str | None:
    """The Cloud Logging trace name from ``X-Cloud-Trace-Context`` or ``traceparent``."""
    if not header:
        return None
    match = re.match(r"^00-([0-9a-f]{32})-", header) or re.match(r"^([0-9a-fA-F]{32})(/|$)", header)
    if not match:
        return None
    project = os.environ.get("GOOGLE_CLOUD_PROJECT", "")
    return f"projects/{project}/traces/{match.group(1)}" if project else match.group(1)


@contextlib.contextmanager
def context(*, job_id: str | None = None, trace: str | None = None) -> Iterator[None]:
    """Attach ``job_id`` and ``trace`` to every log line in this block."""
    tokens = [_job_id.set(job_id or _job_id.get()), _trace.set(trace or _trace.get())]
    try:
        yield
    finally:
        _trace.reset(tokens[1])
        _job_id.reset(tokens[0])


def set_job(job_id: str) -> None:
    """Attach ``job_id`` to the log lines that follow in this context."""
    _job_id.set(job_id)
