"""Which buckets and containers the migration API may be asked to touch: checked before any storage request.

The API runs with the functions' identity, which holds roles the caller may not: without a list, a caller could
have it copy any bucket it can read over any container it can write (a confused deputy).

- ``MIGRATE_SOURCES``: buckets, or ``bucket/prefix``, separated by commas; shell-style patterns (``photos-*``)
  match names. Default: the deployment's own bucket (``GCS_BUCKET``).
- ``MIGRATE_CONTAINERS``: containers, the same way. Default: the deployment's own container
  (``MIGRATE_CONTAINER``, else ``AZURE_STORAGE_CONTAINER``).

The CLI runs as the operator, with the operator's own rights, and is not limited by these.
"""

from __future__ import annotations

import fnmatch
import os
import re

from core.errors import BadRequest, NotAllowed

SOURCES_VAR = "MIGRATE_SOURCES"
CONTAINERS_VAR = "MIGRATE_CONTAINERS"
# GCS: 3-63 characters of lowercase letters, digits, '-', '_' and '.', starting and ending with a letter or digit
# (dotted names up to 222, 63 a part). Azure: 3-63 lowercase letters, digits and single hyphens, no hyphen at
# either end.
GCS_BUCKET = re.compile(r"(?=.{3,222}$)[a-z0-9](?:[a-z0-9_.-]*[a-z0-9])?")
AZURE_CONTAINER = re.compile(r"(?=.{3,63}$)[a-z0-9]+(?:-[a-z0-9]+)*")


def _entries(variable: str, *defaults: str) -> list[str]:
    raw = os.environ.get(variable, "").strip()
    if raw:
        return [entry.strip().strip("/") for entry in re.split(r"[,\s]+", raw) if entry.strip()]
    own = next((os.environ[d].strip() for d in defaults if os.environ.get(d, "").strip()), "")
    return [own] if own else []


def check_source(bucket: str, prefix: str = "") -> None:
    """``BadRequest`` for a name GCS would refuse; ``NotAllowed`` unless ``MIGRATE_SOURCES`` admits it."""
    if not GCS_BUCKET.fullmatch(bucket) or ".." in bucket or any(len(part) > 63 for part in bucket.split(".")):
        raise BadRequest(f"{bucket!r} is not a valid GCS bucket name")
    allowed = _entries(SOURCES_VAR, "GCS_BUCKET")
    for entry in allowed:
        name, _, within = entry.partition("/")
        if fnmatch.fnmatchcase(bucket, name) and (not within or f"{prefix.strip('/')}/".startswith(f"{within}/")):
            return
    raise NotAllowed(
        f"gs://{bucket}/{prefix} is not a source this deployment migrates ({SOURCES_VAR}: "
        f"{', '.join(allowed) or 'unset, and no GCS_BUCKET'})"
    )


def check_container(container: str) -> None:
    """``BadRequest`` for a name Azure would refuse; ``NotAllowed`` unless ``MIGRATE_CONTAINERS`` admits it."""
    if not AZURE_CONTAINER.fullmatch(container):
        raise BadRequest(f"{container!r} is not a valid Azure container name")
    allowed = _entries(CONTAINERS_VAR, "MIGRATE_CONTAINER", "AZURE_STORAGE_CONTAINER")
    if not any(fnmatch.fnmatchcase(container, entry) for entry in allowed):
        raise NotAllowed(
            f"az://{container} is not a container this deployment migrates into ({CONTAINERS_VAR}: "
            f"{', '.join(allowed) or 'unset, and no MIGRATE_CONTAINER'})"
        )
