"""Who asked: the identity a run record names for its start, cutover, abort and rollback.

As the platform gives it, never a secret:

- GCP: the ``email`` of the Google ID token that IAM checked before the function ran (``google:EMAIL``);
- Azure: Easy Auth's ``X-MS-CLIENT-PRINCIPAL-NAME`` when set, else which function key opened the route, as a
  fingerprint (``function key sha256:1a2b3c4d``, the key itself is never stored; hash each operator's key to tell);
- the CLI: ``MIGRATE_ACTOR`` when set, else ``USER@HOST (cli)``;
- locally, where no auth applies: ``unauthenticated``.
"""

from __future__ import annotations

import base64
import getpass
import hashlib
import json
import os
import socket
from collections.abc import Callable, Mapping

ACTOR_VAR = "MIGRATE_ACTOR"


def from_request(header: Callable[[str], str], query: Mapping[str, str]) -> str:
    """The caller of an HTTP request (``header`` looks a header up by name, case-insensitively)."""
    authorization = header("Authorization")
    if authorization.lower().startswith("bearer "):
        claims = _claims(authorization[7:].strip())
        who = claims.get("email") or claims.get("sub")
        if who:
            return f"google:{who}"
    principal = header("X-MS-CLIENT-PRINCIPAL-NAME")
    if principal:
        return f"azure:{principal}"
    key = header("x-functions-key") or query.get("code", "")
    if key:
        return f"function key sha256:{hashlib.sha256(key.encode()).hexdigest()[:8]}"
    return "unauthenticated"


def of_cli() -> str:
    """The operator running the CLI."""
    given = os.environ.get(ACTOR_VAR, "").strip()
    if given:
        return given
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"{user}@{socket.gethostname()} (cli)"


def _claims(token: str) -> dict[str, str]:
    """The payload of a JWT the platform has verified already (nothing here trusts an unverified one for access)."""
    try:
        payload = token.split(".")[1]
        return dict(json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))))
    except (IndexError, ValueError, TypeError):
        return {}
