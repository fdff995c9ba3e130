"""The one exception tree of the project.

Every failure that crosses a module boundary is one of these; adapters in
``core.clouds`` translate SDK errors with ``raise X(...) from exc``::

    CoreError
     ├── NotFound            (also LookupError)  the key, job or object does not exist
     ├── Conflict                                a conditional write lost: re-read and retry
     │    └── Refused                            a migration step its run's state does not allow now
     ├── BadRequest          (also ValueError)   the caller sent something unusable
     │    ├── Forbidden      (also PermissionError) the cloud refused this identity: a role is missing
     │    │    └── NotAllowed                    outside the migration allowlist: refused before any request
     │    ├── PayloadTooLarge                    more bytes than the upload cap
     │    └── InvalidImage                       not a supported image, or a damaged one
     │         └── ImageTooLarge                 a raster over the pixel limit (seen in the header)
     ├── ConfigError         (also RuntimeError) a setting is missing or malformed; names the variable
     └── TransientError                          worth retrying: network, throttling, a busy job
          ├── Busy                               another worker holds the job right now
          └── Frozen                             uploads are frozen for a cutover

Each class has a ``code``: the stable machine-readable string the HTTP API
puts in ``{"error": code, "message": str(exc)}``.
"""

from __future__ import annotations


class CoreError(Exception):
    """Base of every error raised on purpose by this project."""

    code = "internal"


class NotFound(CoreError, LookupError):
    """The requested object, job or record does not exist."""

    code = "not_found"

    def __str__(self) -> str:  # LookupError would repr() the message otherwise
        return str(self.args[0]) if self.args else "not found"


class Conflict(CoreError):
    """A conditional write failed: somebody else changed the object first."""

    code = "conflict"


class Refused(Conflict):
    """A migration step that the run's state does not allow now (no live run, not switched yet, finished): nothing
    was changed. HTTP 409; the CLI exits 2."""

    code = "refused"


class BadRequest(CoreError, ValueError):
    """The input cannot be used as it is; retrying the same input fails again."""

    code = "bad_request"


class Forbidden(BadRequest, PermissionError):
    """The cloud refused the request for this identity (401/403): a role or permission is missing."""

    code = "forbidden"


class NotAllowed(Forbidden):
    """A bucket or container outside the migration API's allowlist; refused before any storage request (403)."""

    code = "not_allowed"


class PayloadTooLarge(BadRequest):
    """The upload has more bytes than the configured cap."""

    code = "payload_too_large"


class InvalidImage(BadRequest):
    """The bytes are not a supported image, or the image is damaged or truncated."""

    code = "unsupported_media_type"


class ImageTooLarge(InvalidImage):
    """The image header declares a raster over the pixel limit; nothing was decoded."""

    code = "image_too_large"


class ConfigError(CoreError, RuntimeError):
    """A setting is missing or malformed. The message names the variable."""

    code = "config_error"


class TransientError(CoreError):
    """A failure that may succeed if retried later (network, throttling, 5xx)."""

    code = "unavailable"


class Busy(TransientError):
    """Another worker is processing this job right now; retry after its lease."""

    code = "busy"


class Frozen(TransientError):
    """Uploads are frozen while the data moves to another cloud; try the new endpoint shortly."""

    code = "frozen"


def transport_failure(exc: BaseException) -> str:
    """Why a request got no answer, in words that name no URL.

    urllib3's ``MaxRetryError`` quotes the request's URL with its query, which may be a SAS: name its cause
    instead (``too many 503 error responses``, ``Connection aborted``), and redact even that.
    """
    from core.logs import redact

    cause = getattr(exc, "reason", None)
    if isinstance(cause, BaseException):
        return redact(f"{type(cause).__name__}: {cause}")
    return redact(type(exc).__name__ if "://" in str(exc) or "url:" in str(exc) else f"{type(exc).__name__}: {exc}")


def raise_for_status(status: int, service: str, subject: str, detail: str = "") -> None:
    """Nothing for a 2xx answer; otherwise raise the error a storage service's HTTP status means.

    404 ``NotFound``; 409 and 412 ``Conflict`` (a failed condition); 401 and 403
    ``Forbidden``; 408, 429 and 5xx ``TransientError``; any other status ``BadRequest``.
    The message names the service, what was asked for and the status with ``detail``
    (the service's error code).
    """
    if 200 <= status < 300:
        return
    why = f"{status} {detail}".strip()
    if status == 404:
        raise NotFound(f"{service} has no {subject} ({why})")
    if status in (409, 412):
        raise Conflict(f"conditional write on {subject} failed ({why})")
    if status in (401, 403):
        raise Forbidden(f"{service} refused the request for {subject} ({why}): check the credentials and roles")
    if status in (408, 429) or status >= 500:
        raise TransientError(f"{service} is unavailable for {subject} ({why})")
    raise BadRequest(f"{service} rejected the request for {subject} ({why})")
