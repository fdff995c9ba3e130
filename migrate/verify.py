"""Compare a GCS prefix with its copy in Azure Blob: names, sizes, checksums, Content-Type, metadata."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from core.ports import ObjectDetails
from migrate import rules
from migrate.copy import NEVER_COPIED, Destination, Source

IGNORED_DEST_PREFIXES = ("_migrations/",)


@dataclass
class Differences:
    same: int = 0
    missing: list[str] = field(default_factory=list)
    extra: list[str] = field(default_factory=list)
    different: list[dict[str, Any]] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return not (self.missing or self.extra or self.different)

    def to_dict(self) -> dict[str, Any]:
        return {"missing": len(self.missing), "extra": len(self.extra), "different": len(self.different),
                "same": self.same}  # fmt: skip


def compare(obj: ObjectDetails, blob: ObjectDetails) -> list[str]:
    """What differs between a source object and its blob; empty when the copy is faithful."""
    problems = []
    if obj.size != blob.size:
        problems.append(f"size {obj.size} != {blob.size}")
    if obj.md5 and obj.md5 != blob.md5:
        problems.append(f"md5 {obj.md5} != {blob.md5}")
    if not obj.md5 and obj.crc32c and blob.metadata.get(rules.CRC32C_KEY) != obj.crc32c:
        problems.append(f"crc32c {obj.crc32c} != {blob.metadata.get(rules.CRC32C_KEY)}")
    if (obj.content_type or "") != (blob.content_type or "") and obj.content_type:
        problems.append(f"content-type {obj.content_type!r} != {blob.content_type!r}")
    for header in ("content_encoding", "cache_control", "content_disposition", "content_language"):
        want, have = getattr(obj, header) or "", getattr(blob, header) or ""
        if want != have:
            problems.append(f"{header.replace('_', '-')} {want!r} != {have!r}")
    expected, _ = rules.azure_metadata(obj.metadata)
    got = {k: v for k, v in blob.metadata.items() if k not in (rules.GENERATION_KEY, rules.CRC32C_KEY)}
    if {k.lower(): v for k, v in expected.items()} != {k.lower(): v for k, v in got.items()}:
        problems.append(f"metadata {expected} != {got}")
    return problems


def run_verify(
    source: Source, dest: Destination, *, source_prefix: str = "", dest_prefix: str = "", encode_names: bool = True
) -> Differences:
    """Walk the source once against one listing of the destination."""
    blobs = {d.key: d for d in dest.list(dest_prefix) if not d.key.startswith(IGNORED_DEST_PREFIXES)}
    found = Differences()
    for obj in _objects(source, source_prefix):
        key = dest_prefix + obj.key[len(source_prefix) :]
        if rules.azure_name_problem(key) and encode_names:
            key = rules.encode_name(key)
        blob = blobs.pop(key, None)
        if blob is None:
            found.missing.append(obj.key)
            continue
        problems = compare(obj, blob)
        if problems:
            found.different.append({"key": obj.key, "problems": problems})
        else:
            found.same += 1
    found.extra = sorted(blobs)
    return found


def _objects(source: Source, prefix: str) -> Iterator[ObjectDetails]:
    for obj in source.list(prefix):
        if not rules.is_directory_marker(obj) and not obj.key[len(prefix) :].startswith(NEVER_COPIED):
            yield obj
