"""Preflight: prove access on both sides before a byte moves (``python -m migrate check``, ``POST /migrations/check``).

On the source: list, and read one object. Where the credentials can sign URLs
(server-side mode): sign one. On the destination: list, make the SAS the copy
uses (a user delegation key for an Entra identity), then write and delete a
probe blob ``_migrations/check-<uuid>``. Each refusal becomes one ``Missing``:
the permission, the role that grants it, and one sentence saying so.

A missing bucket or container, or an endpoint that does not answer, is not a
missing permission: those raise ``NotFound`` / ``TransientError`` / ``ConfigError``
for the caller to turn into exit code 2 (or 404 / 503 over HTTP).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from core.clouds import identity
from core.errors import Forbidden
from core.ports import ObjectDetails

PROBE_PREFIX = "_migrations/check-"
AZURE_CONTRIBUTOR = "Storage Blob Data Contributor"
_BLOBS = "Microsoft.Storage/storageAccounts/blobServices/containers/blobs"


@dataclass(frozen=True)
class Missing:
    side: str  # "source" or "dest"
    permission: str
    role: str
    message: str

    def to_dict(self) -> dict[str, str]:
        return asdict(self)


def preflight(source: Any, dest: Any, *, source_prefix: str = "", dest_prefix: str = "") -> list[Missing]:
    """Every permission the copy needs that is refused; empty when all is there."""
    who = identity.describe()
    missing: list[Missing] = []

    def probe(side: str, permission: str, role: str, what: str, step: Callable[[], Any]) -> bool:
        try:
            step()
        except Forbidden as exc:
            where = f"gs://{source.bucket_name}" if side == "source" else f"az://{dest.container_name}"
            grantee = who["gcs"] if side == "source" else who["azure"]
            message = f"{where}: cannot {what} ({permission}); grant {role} to the identity in use ({grantee}). {exc}"
            missing.append(Missing(side, permission, role, message))
            return False
        return True

    first: list[ObjectDetails | None] = [None]

    def list_source() -> None:
        first[0] = source.check(source_prefix)

    if probe("source", "storage.objects.list", "roles/storage.objectViewer", "list objects", list_source):
        sample = first[0]
        if sample is not None and sample.size > 0:
            probe("source", "storage.objects.get", "roles/storage.objectViewer", "read objects",
                  lambda: source.read_range(sample.key, sample.generation, 0, 0))  # fmt: skip
        if source.can_sign():
            probe("source", "iam.serviceAccounts.signBlob",
                  "roles/iam.serviceAccountTokenCreator on the service account itself (for server-side copies)",
                  "sign URLs", lambda: source.signed_url(sample.key if sample else "probe", None))  # fmt: skip
    probe("dest", f"{_BLOBS}/read", AZURE_CONTRIBUTOR, "list blobs", lambda: dest.check(dest_prefix))
    delegated = probe(
        "dest", "Microsoft.Storage/storageAccounts/blobServices/generateUserDelegationKey/action",
        "Storage Blob Delegator (on the storage account)", "get a user delegation key for the copy's SAS",
        dest.authorize,
    )  # fmt: skip
    if delegated:
        key = f"{PROBE_PREFIX}{uuid.uuid4().hex}"
        probe_object = ObjectDetails(key=key, size=0, md5=None, content_type="text/plain")
        wrote = probe("dest", f"{_BLOBS}/write", AZURE_CONTRIBUTOR, "write blobs",
                      lambda: dest.put(probe_object, b""))  # fmt: skip
        if wrote:
            probe("dest", f"{_BLOBS}/delete", AZURE_CONTRIBUTOR, "delete blobs", lambda: dest.delete(key))
    return missing


def result(missing: list[Missing]) -> dict[str, Any]:
    """The JSON answer of ``check --json`` and ``POST /migrations/check``."""
    return {"ok": not missing, "missing": [m.to_dict() for m in missing]}
