"""CRC32C of a whole object from the CRC32Cs of its parts, without the bytes (zlib's ``crc32_combine``).

A block staged before a copy was killed cannot be read back from Azure, but its
CRC32C travels in its block id. ``combine`` joins those with the CRC32Cs of the
blocks read after the resume, so the whole object is still proven against the
source's CRC32C before the block list is committed.
"""

from __future__ import annotations

import base64

import google_crc32c

POLYNOMIAL = 0x82F63B78  # Castagnoli, reflected


def value(data: bytes) -> int:
    """The CRC32C of ``data``."""
    return int(google_crc32c.value(data))


def extend(crc: int, data: bytes) -> int:
    """The CRC32C of ``A + data`` from ``crc(A)``, at C speed (``combine`` is for when the bytes are gone)."""
    return int(google_crc32c.extend(crc, data))


def from_gcs(encoded: str) -> int:
    """GCS's base64 big-endian CRC32C as an int."""
    return int.from_bytes(base64.b64decode(encoded), "big")


def to_gcs(crc: int) -> str:
    """An int CRC32C as GCS writes it: base64 of its four big-endian bytes."""
    return base64.b64encode(crc.to_bytes(4, "big")).decode()


def _times(matrix: list[int], vector: int) -> int:
    total, row = 0, 0
    while vector:
        if vector & 1:
            total ^= matrix[row]
        vector >>= 1
        row += 1
    return total


def _square(matrix: list[int]) -> list[int]:
    return [_times(matrix, matrix[n]) for n in range(32)]


def combine(first: int, second: int, second_length: int) -> int:
    """The CRC32C of ``A + B`` from ``crc(A)``, ``crc(B)`` and ``len(B)``."""
    if second_length <= 0:
        return first
    odd = [POLYNOMIAL] + [1 << n for n in range(31)]  # the operator for one zero bit
    even = _square(odd)  # two zero bits
    odd = _square(even)  # four zero bits
    while True:
        even = _square(odd)  # one zero byte, then 4, 16, ...
        if second_length & 1:
            first = _times(even, first)
        second_length >>= 1
        if not second_length:
            break
        odd = _square(even)
        if second_length & 1:
            first = _times(odd, first)
        second_length >>= 1
        if not second_length:
            break
    return first ^ second
