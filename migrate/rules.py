"""What a GCS object becomes in Azure Blob: its name, its metadata keys and its access tier.

Names Azure rejects or alters (``azure_name_problem``): a name with a ``.`` or
``..`` path segment (``a/../b`` would be written over ``b``), ending in ``.``,
holding ``\\`` or a control character, longer than 1,024 characters, or with
more than 254 path segments. They are reported and skipped, or with
``--encode-names`` stored under ``encode_name(key)``: each such character, and
``%`` itself, as ``%XX`` (UTF-8), the dots of a ``.`` or ``..`` segment and a
trailing ``.`` as ``%2E``.
``urllib.parse.unquote`` gives the original back.

Directory markers (a key ending in ``/`` with zero bytes) are not copied: Azure
Blob has no folders, and the prefixes exist as soon as a blob is under them.

Metadata keys must be C# identifiers on Azure. A key that is not one, or that
starts with ``gcsx_``, is stored as ``gcsx_`` + ``escape_key(key)``: letters
and digits stay, ``_`` becomes ``__``, and every other byte of its UTF-8 becomes
``_`` and two hex digits. ``unescape_key`` reverses it. Values that are not
printable ASCII are stored percent-encoded (UTF-8). Both are reported.

Storage classes map to access tiers: STANDARD to Hot, NEARLINE to Cool,
COLDLINE to Cold, ARCHIVE to Archive (``--tier-map CLASS=Tier,...`` overrides).
"""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Mapping

from core import names
from core.clouds import METADATA_VALUE_SAFE
from core.errors import BadRequest
from core.ports import ObjectDetails, dot_segment

MAX_NAME_LENGTH = 1024
MAX_SEGMENTS = 254
RENAMED_PREFIX = "gcsx_"
GENERATION_KEY = names.MIGRATED_KEY
CRC32C_KEY = "gcs_crc32c"
DEFAULT_TIERS = {
    "STANDARD": "Hot",
    "MULTI_REGIONAL": "Hot",
    "REGIONAL": "Hot",
    "DURABLE_REDUCED_AVAILABILITY": "Hot",
    "NEARLINE": "Cool",
    "COLDLINE": "Cold",
    "ARCHIVE": "Archive",
}
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def azure_name_problem(key: str) -> str | None:
    """Why Azure Blob would reject or alter ``key``; None if it is fine."""
    if dot_segment(key):
        return "has a '.' or '..' path segment (HTTP resolves 'a/../b' to 'b', which it would overwrite)"
    if key.endswith("."):
        return "ends with '.'"
    if "\\" in key:
        return "holds '\\'"
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in key):
        return "holds a control character"
    if len(key) > MAX_NAME_LENGTH:
        return f"is {len(key)} characters long (the limit is {MAX_NAME_LENGTH})"
    if key.count("/") + 1 > MAX_SEGMENTS:
        return f"has more than {MAX_SEGMENTS} path segments"
    return None


def encode_name(key: str) -> str:
    """The documented reversible encoding for names Azure rejects."""
    encoded = "".join(
        urllib.parse.quote(c, safe="") if c in "%\\" or ord(c) < 0x20 or ord(c) == 0x7F else c for c in key
    )
    # A '.' or '..' segment has its dots encoded, so the name keeps its place.
    segments = [s.replace(".", "%2E") if s in (".", "..") else s for s in encoded.split("/")]
    encoded = "/".join(segments)
    return encoded[:-1] + "%2E" if encoded.endswith(".") else encoded


def is_directory_marker(obj: ObjectDetails) -> bool:
    return obj.key.endswith("/") and obj.size == 0


def escape_key(key: str) -> str:
    out = []
    for char in key:
        if char.isascii() and char.isalnum():
            out.append(char)
        elif char == "_":
            out.append("__")
        else:
            out.extend(f"_{byte:02x}" for byte in char.encode())
    return "".join(out)


def unescape_key(escaped: str) -> str:
    raw, index = bytearray(), 0
    while index < len(escaped):
        char = escaped[index]
        if char != "_":
            raw += char.encode()
            index += 1
        elif escaped[index + 1 : index + 2] == "_":
            raw += b"_"
            index += 2
        else:
            raw.append(int(escaped[index + 1 : index + 3], 16))
            index += 3
    return raw.decode()


def azure_metadata_key(key: str) -> str:
    """The Azure name of a GCS metadata key."""
    if _IDENTIFIER.fullmatch(key) and not key.startswith(RENAMED_PREFIX):
        return key
    return RENAMED_PREFIX + escape_key(key)


def gcs_metadata_key(azure_key: str) -> str:
    """The GCS key an Azure metadata name came from (inverse of ``azure_metadata_key``)."""
    return unescape_key(azure_key[len(RENAMED_PREFIX) :]) if azure_key.startswith(RENAMED_PREFIX) else azure_key


def azure_metadata(metadata: Mapping[str, str]) -> tuple[dict[str, str], list[str]]:
    """Metadata valid for Azure, and notes on every key renamed or value encoded."""
    mapped: dict[str, str] = {}
    notes: list[str] = []
    for key, value in metadata.items():
        new_key = azure_metadata_key(key)
        if new_key != key:
            notes.append(f"metadata key {key!r} stored as {new_key!r}")
        if new_key.lower() in (k.lower() for k in mapped):
            raise BadRequest(f"metadata keys collide on Azure, which ignores case: {key!r}")
        plain = all(c in METADATA_VALUE_SAFE for c in value)
        new_value = value if plain else urllib.parse.quote(value, safe=METADATA_VALUE_SAFE)
        if new_value != value:
            notes.append(f"metadata value of {key!r} percent-encoded")
        mapped[new_key] = new_value
    return mapped, notes


def parse_tier_map(text: str | None) -> dict[str, str]:
    """``DEFAULT_TIERS`` with ``CLASS=Tier,...`` overrides."""
    tiers = dict(DEFAULT_TIERS)
    for item in filter(None, (text or "").split(",")):
        storage_class, _, tier = item.partition("=")
        if not tier or tier not in ("Hot", "Cool", "Cold", "Archive"):
            raise BadRequest(f"--tier-map takes CLASS=Hot|Cool|Cold|Archive, got {item!r}")
        tiers[storage_class.strip().upper()] = tier
    return tiers
