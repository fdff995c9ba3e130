"""What an upload is, from its first bytes: the sniffers for the formats whose Pillow plugins load on demand.

``sniff(data)`` names HEIF (HEVC-coded, that is HEIC), AVIF and JPEG XL from their bytes alone, never from a name
or a header, so that ``core.imaging`` registers a plugin only when such bytes arrive:

- HEIF and AVIF are ISO-BMFF files. The ``ftyp`` box's brands say which (``heic``, ``heix``, ``avif``, ``avis``,
  ...); when only the shared ``mif1``/``msf1`` brands are there, the primary item's type decides (``hvc1`` is
  HEIC, ``av01`` is AVIF), read from the ``meta`` box's ``pitm`` and ``iinf``.
- JPEG XL is a bare codestream (``FF 0A``) or a container (``JXL `` signature box). ``jxl_header`` reads the
  codestream's size header and image metadata bit by bit, because the JPEG XL plugin decodes the whole raster
  inside ``Image.open``: the pixel limit and the animation check must come before it.

Pure Python and bounded: every read is checked against the data's length, and damaged headers raise
``InvalidImage`` with a sentence.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, replace

from core.errors import InvalidImage

HEIF = "HEIF"
AVIF = "AVIF"
JXL = "JXL"

_HEIF_BRANDS = frozenset({b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"hevm", b"hevs"})
_AVIF_BRANDS = frozenset({b"avif", b"avis", b"MA1A", b"MA1B"})
_SHARED_BRANDS = frozenset({b"mif1", b"msf1", b"mif2"})
_ITEM_TYPES = {b"hvc1": HEIF, b"av01": AVIF}
_JXL_CONTAINER = b"\x00\x00\x00\x0cJXL \r\n\x87\n"
_JXL_CODESTREAM = b"\xff\x0a"
_MAX_BOXES = 64
"""Top-level or nested boxes read before giving up: a real ``meta`` box has a handful."""


def sniff(data: bytes) -> str | None:
    """``HEIF``, ``AVIF`` or ``JXL`` for such bytes (Pillow's format names); None for anything else."""
    if data.startswith(_JXL_CODESTREAM) or data.startswith(_JXL_CONTAINER):
        return JXL
    if len(data) >= 16 and data[4:8] == b"ftyp":
        return _sniff_bmff(data)
    return None


def _sniff_bmff(data: bytes) -> str | None:
    size = struct.unpack(">I", data[:4])[0]
    if size < 16 or size > len(data):
        return None
    brands = [data[8:12]] + [data[i : i + 4] for i in range(16, size - 3, 4)]
    if any(brand in _AVIF_BRANDS for brand in brands):
        return AVIF
    if any(brand in _HEIF_BRANDS for brand in brands):
        return HEIF
    if any(brand in _SHARED_BRANDS for brand in brands):
        return _primary_item_type(data, size)
    return None


def _boxes(data: bytes, start: int, end: int) -> list[tuple[bytes, int, int]]:
    """The boxes between ``start`` and ``end`` as (type, payload start, box end), stopping at a damaged one."""
    found: list[tuple[bytes, int, int]] = []
    at = start
    while at + 8 <= end and len(found) < _MAX_BOXES:
        size, kind = struct.unpack(">I4s", data[at : at + 8])
        header = 8
        if size == 1 and at + 16 <= end:
            size, header = struct.unpack(">Q", data[at + 8 : at + 16])[0], 16
        elif size == 0:
            size = end - at
        if size < header or at + size > end:
            break
        found.append((kind, at + header, at + size))
        at += size
    return found


def _meta_boxes(data: bytes, ftyp_end: int) -> list[tuple[bytes, int, int]]:
    """The boxes inside the file's top-level ``meta`` (a full box: version and flags first); none without one."""
    meta = next((box for box in _boxes(data, ftyp_end, len(data)) if box[0] == b"meta"), None)
    return _boxes(data, meta[1] + 4, meta[2]) if meta is not None else []


def _inside(data: bytes, boxes: list[tuple[bytes, int, int]], kind: bytes) -> list[tuple[bytes, int, int]]:
    """The boxes inside each box of ``kind`` among ``boxes``."""
    return [child for found, start, end in boxes if found == kind for child in _boxes(data, start, end)]


def _primary_item_type(data: bytes, ftyp_end: int) -> str | None:
    """The format of the primary item of a ``mif1``/``msf1`` file, from ``meta`` > ``pitm`` and ``iinf``."""
    children = _meta_boxes(data, ftyp_end)
    primary = None
    types: dict[int, bytes] = {}
    for kind, start, end in children:
        if kind == b"pitm" and end - start >= 6:
            wide = data[start] != 0
            primary = struct.unpack(">I" if wide else ">H", data[start + 4 : start + (8 if wide else 6)])[0]
        elif kind == b"iinf" and end - start >= 6:
            wide = data[start] != 0
            first = start + (8 if wide else 6)
            for entry, body, entry_end in _boxes(data, first, end):
                if entry == b"infe" and entry_end - body >= 12 and data[body] >= 2:
                    item_wide = data[body] >= 3
                    id_end = body + (8 if item_wide else 6)
                    item_id = struct.unpack(">I" if item_wide else ">H", data[body + 4 : id_end])[0]
                    type_at = body + (10 if item_wide else 8)
                    types[item_id] = data[type_at : type_at + 4]
    if primary is None:
        return None
    return _ITEM_TYPES.get(types.get(primary, b""))


def nclx(data: bytes) -> tuple[int, int] | None:
    """The (colour primaries, transfer) code points of an HEIF/AVIF file's ``nclx`` colour box, if it has one.

    Read from ``meta`` > ``iprp`` > ``ipco`` > ``colr``, for decoders that do not expose it (Pillow's AVIF).
    """
    if len(data) < 16 or data[4:8] != b"ftyp":
        return None
    ftyp_end = struct.unpack(">I", data[:4])[0]
    properties = _inside(data, _inside(data, _meta_boxes(data, ftyp_end), b"iprp"), b"ipco")
    for prop, at, prop_end in properties:
        if prop == b"colr" and prop_end - at >= 11 and data[at : at + 4] == b"nclx":
            primaries, transfer = struct.unpack(">HH", data[at + 4 : at + 8])
            return primaries, transfer
    return None


@dataclass(frozen=True)
class JxlHeader:
    """What a JPEG XL codestream's first bits say."""

    width: int
    height: int
    orientation: int
    animated: bool
    alpha: bool
    xyb: bool
    """Whether the image is coded in XYB, libjxl's lossy mode; a lossless file is not."""
    jpeg: bool = False
    """Whether it is a recompressed JPEG (a ``jbrd`` box): a photo, though not XYB-coded."""

    @property
    def photo(self) -> bool:
        """Lossy coding, or a JPEG inside: what a photo is, and what a JPEG result suits."""
        return self.xyb or self.jpeg


def jxl_header(data: bytes) -> JxlHeader:
    """The size header and image metadata of a JPEG XL file; ``InvalidImage`` when they cannot be read."""
    try:
        header = _read_header(_codestream(data))
    except (IndexError, struct.error) as exc:
        raise InvalidImage("damaged or truncated JXL image: its header ends early") from exc
    if data.startswith(_JXL_CONTAINER) and any(box[0] == b"jbrd" for box in _boxes(data, 0, len(data))):
        return replace(header, jpeg=True)
    return header


def _codestream(data: bytes) -> bytes:
    if data.startswith(_JXL_CODESTREAM):
        return data
    parts = []
    for kind, start, end in _boxes(data, 0, len(data)):
        if kind == b"jxlc":
            return data[start:end]
        if kind == b"jxlp":
            parts.append(data[start + 4 : end])  # each partial box begins with its 4-byte index
            if sum(len(part) for part in parts) >= 64:
                break
    if not parts:
        raise InvalidImage("damaged JXL container: no codestream box (jxlc or jxlp)")
    return b"".join(parts)


class _Bits:
    """LSB-first bit reader over bytes, as the JPEG XL codestream is written."""

    def __init__(self, data: bytes, start: int = 0) -> None:
        self.data = data
        self.at = start * 8

    def u(self, n: int) -> int:
        value = 0
        for i in range(n):
            byte = self.data[self.at >> 3]  # IndexError past the end: a truncated header
            value |= ((byte >> (self.at & 7)) & 1) << i
            self.at += 1
        return value

    def flag(self) -> bool:
        return self.u(1) == 1

    def u32(self, *dists: tuple[int, int]) -> int:
        """JPEG XL's U32: a 2-bit selector, then (offset, bits) of the chosen distribution."""
        offset, bits = dists[self.u(2)]
        return offset + (self.u(bits) if bits else 0)


_RATIOS = {1: (1, 1), 2: (12, 10), 3: (4, 3), 4: (3, 2), 5: (16, 9), 6: (5, 4), 7: (2, 1)}
_SIZE = ((1, 9), (1, 13), (1, 18), (1, 30))
_PREVIEW_DIV8 = ((16, 0), (32, 0), (1, 5), (33, 9))
_PREVIEW = ((1, 6), (65, 8), (321, 10), (1345, 12))
_ALPHA = 0


def _size(bits: _Bits, *, preview: bool = False) -> tuple[int, int]:
    """A SizeHeader (or a PreviewHeader) as (width, height)."""
    div8 = bits.flag()

    def extent() -> int:
        if preview:
            return bits.u32(*(_PREVIEW_DIV8 if div8 else _PREVIEW)) * (8 if div8 else 1)
        return (bits.u(5) + 1) * 8 if div8 else bits.u32(*_SIZE)

    height = extent()
    ratio = bits.u(3)
    if ratio:
        num, den = _RATIOS[ratio]
        return height * num // den, height
    return extent(), height


def _bit_depth(bits: _Bits) -> None:
    if bits.flag():  # float samples
        bits.u32((32, 0), (16, 0), (24, 0), (1, 6))
        bits.u(4)
    else:
        bits.u32((8, 0), (10, 0), (12, 0), (1, 6))


def _read_header(code: bytes) -> JxlHeader:
    if not code.startswith(_JXL_CODESTREAM):
        raise InvalidImage("damaged JXL image: its codestream does not begin with FF 0A")
    bits = _Bits(code, 2)
    width, height = _size(bits)
    orientation, animated, alpha, xyb = 1, False, False, True
    if not bits.flag():  # ImageMetadata is not all default
        if bits.flag():  # extra fields
            orientation = bits.u(3) + 1
            if bits.flag():
                _size(bits)  # intrinsic size
            if bits.flag():
                _size(bits, preview=True)
            animated = bits.flag()
            if animated:
                return JxlHeader(width, height, orientation, True, alpha, xyb)
        _bit_depth(bits)
        bits.flag()  # modular_16_bit_buffer_sufficient
        extra = bits.u32((0, 0), (1, 0), (2, 4), (1, 12))
        for _ in range(extra):
            if bits.flag():  # all default: an 8-bit alpha channel
                alpha = True
                continue
            kind = bits.u32((0, 0), (1, 0), (2, 4), (18, 6))
            alpha = alpha or kind == _ALPHA
            _bit_depth(bits)
            bits.u32((0, 0), (3, 0), (4, 0), (1, 3))  # dim_shift
            bits.u(8 * bits.u32((0, 0), (0, 4), (16, 5), (48, 10)))  # name
            if kind == _ALPHA:
                bits.flag()
            elif kind == 2:  # spot colour: four F16
                bits.u(64)
            elif kind == 5:  # CFA channel
                bits.u32((1, 0), (0, 2), (3, 4), (19, 8))
        xyb = bits.flag()
    return JxlHeader(width, height, orientation, animated, alpha, xyb)
