"""``migrate.check.preflight`` on small fakes: each refusal on the source side, which the emulators cannot play.

fake-gcs-server answers every request, so a source that may not list, read or
sign URLs is played here by a source that refuses the one step named.
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from core.errors import Forbidden, NotFound
from core.ports import ObjectDetails
from migrate.check import preflight, result


class Source:
    """The part of ``GcsSource`` that the preflight uses, refusing the steps in ``refuse``."""

    bucket_name = "bkt"

    def __init__(self, *, refuse: set[str] = frozenset(), objects: int = 1, signs: bool = False) -> None:
        self.refuse, self.objects, self.signs = refuse, objects, signs
        self.steps: list[str] = []

    def _step(self, name: str) -> None:
        self.steps.append(name)
        if name in self.refuse:
            raise Forbidden(f"403 on {name}")

    def check(self, prefix: str = "") -> ObjectDetails | None:
        self._step("list")
        return ObjectDetails(key=f"{prefix}a.jpg", size=10, generation="7") if self.objects else None

    def read_range(self, key: str, generation: str | None, start: int, end: int) -> bytes:
        self._step("read")
        return b"x"

    def can_sign(self) -> bool:
        return self.signs

    def signed_url(self, key: str, generation: str | None, lifetime: timedelta = timedelta(minutes=15)) -> str:
        self._step("sign")
        return f"https://storage.googleapis.com/bkt/{key}?X-Goog-Signature=masked"


class Dest:
    """The part of ``AzureBlobDestination`` that the preflight uses; it keeps what it was given."""

    container_name = "ct"

    def __init__(self, *, refuse: set[str] = frozenset(), missing: bool = False) -> None:
        self.refuse, self.missing = refuse, missing
        self.blobs: dict[str, bytes] = {}

    def _step(self, name: str) -> None:
        if self.missing:
            raise NotFound("no Azure container 'ct'")
        if name in self.refuse:
            raise Forbidden(f"403 on {name}")

    def check(self, prefix: str = "") -> None:
        self._step("list")

    def authorize(self) -> None:
        self._step("delegate")

    def put(self, details: ObjectDetails, data: bytes) -> None:
        self._step("write")
        self.blobs[details.key] = data

    def delete(self, key: str) -> None:
        self._step("delete")
        del self.blobs[key]


def permissions(found: list) -> list[tuple[str, str]]:
    return [(m.side, m.permission.rsplit("/", 1)[-1]) for m in found]


def test_all_there() -> None:
    dest = Dest()
    assert preflight(Source(signs=True), dest) == []
    assert dest.blobs == {}, "the probe is deleted"
    assert result([]) == {"ok": True, "missing": []}


@pytest.mark.parametrize(
    ("refuse", "expected", "role"),
    [
        ({"list"}, [("source", "storage.objects.list")], "roles/storage.objectViewer"),
        ({"read"}, [("source", "storage.objects.get")], "roles/storage.objectViewer"),
        ({"sign"}, [("source", "iam.serviceAccounts.signBlob")], "roles/iam.serviceAccountTokenCreator"),
    ],
)
def test_each_source_refusal_names_its_permission_and_role(
    refuse: set[str], expected: list[tuple[str, str]], role: str
) -> None:
    found = preflight(Source(refuse=refuse, signs=True), Dest())
    assert permissions(found) == expected
    assert found[0].role.startswith(role)
    assert found[0].message.startswith("gs://bkt: cannot ") and role in found[0].message


def test_a_source_that_may_not_list_is_not_read_either() -> None:
    source = Source(refuse={"list"}, signs=True)
    preflight(source, Dest())
    assert source.steps == ["list"]


def test_an_empty_bucket_is_listed_but_nothing_is_read() -> None:
    source = Source(objects=0)
    assert preflight(source, Dest()) == []
    assert source.steps == ["list"]


def test_no_user_delegation_key_names_storage_blob_delegator_and_writes_nothing() -> None:
    dest = Dest(refuse={"delegate"})
    found = preflight(Source(), dest)
    assert permissions(found) == [("dest", "action")]
    assert found[0].role.startswith("Storage Blob Delegator")
    assert "generateUserDelegationKey" in found[0].permission


def test_a_missing_container_is_not_a_permission() -> None:
    with pytest.raises(NotFound):
        preflight(Source(), Dest(missing=True))
