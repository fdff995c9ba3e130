"""migrate.rules: the names Azure would reject or alter, and their reversible encoding."""

from __future__ import annotations

import urllib.parse

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.ports import dot_segment
from migrate import rules


@pytest.mark.parametrize(
    ("key", "problem"),
    [
        ("a/../b.jpg", "'..' path segment"),
        ("./b.jpg", "'..' path segment"),
        ("a/.", "'..' path segment"),
        ("..", "'..' path segment"),
        ("trailing.", "ends with '.'"),
        ("back\\slash", "holds '\\'"),
        ("bell\x07", "control character"),
        ("x" * 1025, "1025 characters long"),
        ("/".join(["s"] * 255), "more than 254 path segments"),
    ],
)
def test_names_azure_rejects_or_alters(key: str, problem: str) -> None:
    found = rules.azure_name_problem(key)
    assert found is not None and problem in found


@pytest.mark.parametrize("key", ["b.jpg", "..hidden", ".hidden/x", "a..b/c", "a/.../b", "ünï #?%.jpg", "x" * 1024])
def test_names_azure_keeps(key: str) -> None:
    assert rules.azure_name_problem(key) is None


@pytest.mark.parametrize(
    ("key", "encoded"),
    [
        ("a/../b.jpg", "a/%2E%2E/b.jpg"),
        ("./c.txt", "%2E/c.txt"),
        ("a/..", "a/%2E%2E"),
        ("trailing.", "trailing%2E"),
        ("50%/a\\b", "50%25/a%5Cb"),
    ],
)
def test_encode_name(key: str, encoded: str) -> None:
    assert rules.encode_name(key) == encoded
    assert urllib.parse.unquote(encoded) == key


@given(st.lists(st.sampled_from([".", "..", "a", "b.", "%", "\\", "\x01", "ü", "..x"]), min_size=1, max_size=6))
def test_encoding_is_reversible_and_leaves_nothing_azure_alters(segments: list[str]) -> None:
    key = "/".join(segments)
    encoded = rules.encode_name(key)
    assert urllib.parse.unquote(encoded) == key
    assert not dot_segment(encoded)
    assert rules.azure_name_problem(encoded) is None
