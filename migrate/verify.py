"""Compare a GCS prefix with its copy in Azure Blob: names, sizes, checksums, headers, metadata and tiers;
with ``download``, the bytes themselves."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from core import crc32c, names
from core.ports import Destination, ObjectDetails, Source
from migrate import rules
from migrate.copy import NEVER_COPIED

IGNORED_DEST_PREFIXES = ("_migrations/", "_cutover/")
"""The run record and the cutover's markers (``replica.json``, the switch, journals) are the destination's own."""


@dataclass
class Differences:
    same: int = 0
    missing: list[str] = field(default_factory=list)
    extra: list[str] = field(default_factory=list)
    different: list[dict[str, Any]] = field(default_factory=list)
    """Each ``{"key", "problems", "properties_only"}``; each problem names the field that differs."""
    unverifiable: list[dict[str, str]] = field(default_factory=list)
    """Each ``{"key", "reason"}``: an Archive blob, whose bytes cannot be read without rehydration."""

    @property
    def clean(self) -> bool:
        return not (self.missing or self.extra or self.different)

    @property
    def properties_different(self) -> int:
        """How many of ``different`` differ only in properties (headers, metadata), not in their bytes."""
        return sum(1 for item in self.different if item["properties_only"])

    def to_dict(self) -> dict[str, Any]:
        return {"missing": len(self.missing), "extra": len(self.extra), "different": len(self.different),
                "properties_different": self.properties_different, "unverifiable": len(self.unverifiable),
                "same": self.same}  # fmt: skip


def compare_bytes(obj: ObjectDetails, blob: ObjectDetails) -> list[str]:
    """What the stored properties say about the bytes: size, MD5, and the CRC32C kept for objects without MD5."""
    problems = []
    if obj.size != blob.size:
        problems.append(f"size {obj.size} != {blob.size}")
    if obj.md5 and obj.md5 != blob.md5:
        problems.append(f"md5 {obj.md5} != {blob.md5}")
    if not obj.md5 and obj.crc32c and blob.metadata.get(rules.CRC32C_KEY) != obj.crc32c:
        problems.append(f"crc32c {obj.crc32c} != {blob.metadata.get(rules.CRC32C_KEY)}")
    return problems


def compare_properties(obj: ObjectDetails, blob: ObjectDetails) -> list[str]:
    """Every property the copy keeps: the five headers and each metadata value after the documented renaming."""
    problems = []
    if (obj.content_type or "") != (blob.content_type or "") and obj.content_type:
        problems.append(f"content-type {obj.content_type!r} != {blob.content_type!r}")
    for header in ("content_encoding", "cache_control", "content_disposition", "content_language"):
        want, have = getattr(obj, header) or "", getattr(blob, header) or ""
        if want != have:
            problems.append(f"{header.replace('_', '-')} {want!r} != {have!r}")
    expected, _ = rules.azure_metadata(obj.metadata)
    kept = (rules.GENERATION_KEY, rules.CRC32C_KEY, names.DEFERRED_KEY)
    want_meta = {k.lower(): v for k, v in expected.items()}
    have_meta = {k.lower(): v for k, v in blob.metadata.items() if k not in kept}
    for name in sorted(set(want_meta) | set(have_meta)):
        if want_meta.get(name) != have_meta.get(name):
            problems.append(f"metadata {name} {want_meta.get(name)!r} != {have_meta.get(name)!r}")
    return problems


def hash_problem(obj: ObjectDetails, chunks: Iterable[bytes]) -> str | None:
    """Hash the destination's bytes as read, independent of any stored property: CRC32C, or MD5 without one."""
    crc, size = 0, 0
    md5 = hashlib.md5() if not obj.crc32c else None
    for chunk in chunks:
        size += len(chunk)
        crc = crc32c.extend(crc, chunk)
        if md5 is not None:
            md5.update(chunk)
    if size != obj.size:
        return f"downloaded {size} bytes != {obj.size}"
    if obj.crc32c and crc != crc32c.from_gcs(obj.crc32c):
        return f"downloaded bytes: crc32c {crc32c.to_gcs(crc)} != {obj.crc32c}"
    if md5 is not None and obj.md5 and md5.hexdigest() != obj.md5:
        return f"downloaded bytes: md5 {md5.hexdigest()} != {obj.md5}"
    return None


def run_verify(
    source: Source,
    dest: Destination,
    *,
    source_prefix: str = "",
    dest_prefix: str = "",
    encode_names: bool = True,
    download: bool = False,
    tiers: Mapping[str, str] | None = None,
) -> Differences:
    """Walk the source once against one listing of the destination.

    ``download`` also reads every blob's bytes and hashes them (as ``rclone check --download`` does), so a
    blob whose bytes changed under a kept Content-MD5 is found. ``tiers`` (default ``rules.DEFAULT_TIERS``)
    says which tier each storage class was copied to: another tier is a property difference, but an
    Archive blob (a lifecycle rule may archive blobs) cannot be read, so it is ``unverifiable``.
    """
    tiers = rules.DEFAULT_TIERS if tiers is None else tiers
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
        content, properties = compare_bytes(obj, blob), compare_properties(obj, blob)
        archived = (blob.storage_class or "").lower() == "archive"
        want_tier = tiers.get((obj.storage_class or "STANDARD").upper())
        moved = bool(want_tier and blob.storage_class and blob.storage_class.lower() != want_tier.lower())
        if moved and not archived:
            properties.append(f"tier {want_tier!r} != {blob.storage_class!r}")
        if download and not content and not archived:
            problem = hash_problem(obj, dest.read_chunks(key))
            content += [problem] if problem else []
        if content or properties:
            found.different.append({"key": obj.key, "problems": content + properties, "properties_only": not content})
        elif archived and (moved or download):
            # Archived by a lifecycle rule, or read by --download: its bytes cannot be read without rehydration.
            reason = "an Archive blob cannot be read without rehydration" + (" (a lifecycle rule moved it)" * moved)
            found.unverifiable.append({"key": obj.key, "reason": reason})
        else:
            found.same += 1
    found.extra = sorted(blobs)
    return found


def _objects(source: Source, prefix: str) -> Iterator[ObjectDetails]:
    for obj in source.list(prefix):
        if not rules.is_directory_marker(obj) and not obj.key[len(prefix) :].startswith(NEVER_COPIED):
            yield obj
