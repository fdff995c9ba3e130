"""core.crc32c: the CRC32C of a whole from its parts, checked against google-crc32c on the bytes."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from core import crc32c


def test_known_value_and_gcs_encoding() -> None:
    assert crc32c.value(b"123456789") == 0xE3069283  # the CRC-32C check value
    assert crc32c.to_gcs(0xE3069283) == "4waSgw=="
    assert crc32c.from_gcs("4waSgw==") == 0xE3069283


@given(st.binary(max_size=300), st.binary(max_size=300))
def test_combine_equals_the_crc_of_the_concatenation(a: bytes, b: bytes) -> None:
    assert crc32c.combine(crc32c.value(a), crc32c.value(b), len(b)) == crc32c.value(a + b)


@given(st.lists(st.binary(min_size=1, max_size=200), min_size=1, max_size=8))
def test_combining_blocks_in_order_gives_the_whole(blocks: list[bytes]) -> None:
    total = 0
    for block in blocks:
        total = crc32c.combine(total, crc32c.value(block), len(block))
    assert total == crc32c.value(b"".join(blocks))


@given(st.binary(max_size=300), st.binary(max_size=300))
def test_extend_equals_the_crc_of_the_concatenation(a: bytes, b: bytes) -> None:
    assert crc32c.extend(crc32c.value(a), b) == crc32c.value(a + b)


def test_a_flipped_byte_changes_the_combined_value() -> None:
    a, b = b"x" * 1000, b"y" * 1000
    flipped = b"x" * 999 + b"z"
    good = crc32c.combine(crc32c.value(a), crc32c.value(b), len(b))
    assert crc32c.combine(crc32c.value(flipped), crc32c.value(b), len(b)) != good


def test_large_lengths_combine() -> None:
    block = bytes(range(256)) * 4096  # 1 MiB
    assert crc32c.combine(crc32c.value(block), crc32c.value(block), len(block)) == crc32c.value(block * 2)
