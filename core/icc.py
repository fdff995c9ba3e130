"""ICC profiles made from colour primaries, for images that state their colours as ``nclx`` code points.

A HEIF or AVIF file may describe its colours with an ``nclx`` box (ITU-T H.273 code points: primaries, transfer,
matrix) instead of an embedded ICC profile. To convert such colours to sRGB with LittleCMS, as embedded profiles are,
``profile(primaries, transfer)`` writes an ICC v2 matrix/TRC display profile: the primaries and D65 white, adapted
to the D50 connection space with the Bradford transform, and the transfer curve as a parametric curve. Made here
from the published numbers, so no third-party profile file (or its licence) ships.

- Primaries: 1 BT.709/sRGB (no conversion needed), 9 BT.2020, 12 Display P3 (SMPTE EG 432-1); or the x, y values
  a decoder gives.
- Transfer: 13 sRGB; 1, 6, 14, 15 BT.709's; 16 PQ and 18 HLG are HDR, which no SDR profile can hold: they are given
  BT.709's curve (no tone mapping), documented in docs/formats.md.
"""

from __future__ import annotations

import functools
import struct

Chromaticities = tuple[tuple[float, float], tuple[float, float], tuple[float, float], tuple[float, float]]
"""Red, green, blue and white, each (x, y)."""

D65 = (0.3127, 0.3290)
PRIMARIES: dict[int, Chromaticities] = {
    1: ((0.640, 0.330), (0.300, 0.600), (0.150, 0.060), D65),
    9: ((0.708, 0.292), (0.170, 0.797), (0.131, 0.046), D65),
    12: ((0.680, 0.320), (0.265, 0.690), (0.150, 0.060), D65),
}
NAMES = {1: "BT.709", 9: "BT.2020", 12: "Display P3"}
SRGB_PRIMARIES = 1
UNSPECIFIED = 2
HDR_TRANSFERS = frozenset({16, 18})
"""PQ (SMPTE ST 2084) and HLG (ARIB STD-B67)."""

# Parametric curves, ICC type 3: Y = (aX + b)^g for X >= d, else cX.
_SRGB_CURVE = (2.4, 1 / 1.055, 0.055 / 1.055, 1 / 12.92, 0.04045)
_BT709_CURVE = (1 / 0.45, 1 / 1.099, 0.099 / 1.099, 1 / 4.5, 0.081)
_D50 = (0.9642, 1.0, 0.8249)
_BRADFORD = ((0.8951, 0.2664, -0.1614), (-0.7502, 1.7135, 0.0367), (0.0389, -0.0685, 1.0296))

Matrix = tuple[tuple[float, float, float], tuple[float, float, float], tuple[float, float, float]]


def _xyz(x: float, y: float) -> tuple[float, float, float]:
    return (x / y, 1.0, (1 - x - y) / y)


def _mul(a: Matrix, b: Matrix) -> Matrix:
    return tuple(tuple(sum(a[i][k] * b[k][j] for k in range(3)) for j in range(3)) for i in range(3))  # type: ignore[return-value]


def _apply(m: Matrix, v: tuple[float, float, float]) -> tuple[float, float, float]:
    return (
        m[0][0] * v[0] + m[0][1] * v[1] + m[0][2] * v[2],
        m[1][0] * v[0] + m[1][1] * v[1] + m[1][2] * v[2],
        m[2][0] * v[0] + m[2][1] * v[1] + m[2][2] * v[2],
    )


def _inverse(m: Matrix) -> Matrix:
    (a, b, c), (d, e, f), (g, h, i) = m
    det = a * (e * i - f * h) - b * (d * i - f * g) + c * (d * h - e * g)
    if abs(det) < 1e-12:
        raise ValueError("the primaries do not span a colour space")
    return (
        ((e * i - f * h) / det, (c * h - b * i) / det, (b * f - c * e) / det),
        ((f * g - d * i) / det, (a * i - c * g) / det, (c * d - a * f) / det),
        ((d * h - e * g) / det, (b * g - a * h) / det, (a * e - b * d) / det),
    )


def colorants(chroma: Chromaticities) -> Matrix:
    """RGB to XYZ under D50 (the ICC connection space): the columns are the red, green and blue colorants."""
    red, green, blue, white = chroma
    columns = [_xyz(*red), _xyz(*green), _xyz(*blue)]
    primaries: Matrix = tuple(tuple(col[row] for col in columns) for row in range(3))  # type: ignore[assignment]
    white_xyz = _xyz(*white)
    scale = _apply(_inverse(primaries), white_xyz)
    to_xyz: Matrix = tuple(tuple(primaries[r][c] * scale[c] for c in range(3)) for r in range(3))  # type: ignore[assignment]
    source, target = _apply(_BRADFORD, white_xyz), _apply(_BRADFORD, _D50)
    gain: Matrix = tuple(tuple(target[r] / source[r] if r == c else 0.0 for c in range(3)) for r in range(3))  # type: ignore[assignment]
    adapt = _mul(_inverse(_BRADFORD), _mul(gain, _BRADFORD))
    return _mul(adapt, to_xyz)


def _s15(value: float) -> bytes:
    return struct.pack(">i", round(value * 65536))


def _xyz_tag(x: float, y: float, z: float) -> bytes:
    return b"XYZ \0\0\0\0" + _s15(x) + _s15(y) + _s15(z)


def _text_tag(text: str) -> bytes:
    ascii_text = text.encode("ascii") + b"\0"
    # Then the empty Unicode (language, count) and ScriptCode (code, count, 67 bytes) parts of ICC v2's type.
    return b"desc\0\0\0\0" + struct.pack(">I", len(ascii_text)) + ascii_text + b"\0" * (4 + 4 + 3 + 67)


def _curve_tag(params: tuple[float, float, float, float, float]) -> bytes:
    return b"para\0\0\0\0" + struct.pack(">H", 3) + b"\0\0" + b"".join(_s15(p) for p in params)


def _pad(data: bytes) -> bytes:
    return data + b"\0" * (-len(data) % 4)


@functools.cache
def profile(chroma: Chromaticities, transfer: int = 13, name: str = "") -> bytes:
    """An ICC v2 RGB display profile (matrix/TRC) for these primaries and H.273 transfer code."""
    curve = _SRGB_CURVE if transfer == 13 else _BT709_CURVE
    matrix = colorants(chroma)
    description = name or "RGB from primaries"
    tags = [
        (b"desc", _text_tag(description)),
        (b"cprt", b"text\0\0\0\0No copyright, use freely\0"),
        (b"wtpt", _xyz_tag(*_D50)),
        (b"rXYZ", _xyz_tag(matrix[0][0], matrix[1][0], matrix[2][0])),
        (b"gXYZ", _xyz_tag(matrix[0][1], matrix[1][1], matrix[2][1])),
        (b"bXYZ", _xyz_tag(matrix[0][2], matrix[1][2], matrix[2][2])),
        (b"rTRC", _curve_tag(curve)),
    ]
    table_size = 4 + 12 * (len(tags) + 2)
    offset = 128 + table_size
    entries, body = [], b""
    for signature, data in tags:
        entries.append(struct.pack(">4sII", signature, offset + len(body), len(data)))
        body += _pad(data)
    trc = entries[-1][4:]  # green and blue share red's curve
    entries += [b"gTRC" + trc, b"bTRC" + trc]
    table = struct.pack(">I", len(entries)) + b"".join(entries)
    size = 128 + len(table) + len(body)
    header = (
        struct.pack(">I4sI4s4s4s", size, b"\0\0\0\0", 0x02100000, b"mntr", b"RGB ", b"XYZ ")
        + struct.pack(">6H", 2026, 1, 1, 0, 0, 0)
        + b"acsp"
        + b"\0" * 24
        + struct.pack(">I", 0)
        + _s15(_D50[0])
        + _s15(_D50[1])
        + _s15(_D50[2])
        + b"\0" * 48
    )
    assert len(header) == 128
    return header + table + body


def for_nclx(primaries: int, transfer: int, chroma: Chromaticities | None = None) -> bytes | None:
    """The profile for these ``nclx`` code points; None where the colours are sRGB's already, or unknown."""
    if primaries in (SRGB_PRIMARIES, UNSPECIFIED):
        return None
    chosen = PRIMARIES.get(primaries) or chroma
    if chosen is None:
        return None
    return profile(chosen, transfer, NAMES.get(primaries, "RGB from primaries"))
