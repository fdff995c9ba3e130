"""Property-based fuzzing (hypothesis) of the parsers that face the outside: images and events.

A short run here (make test); a longer one: ``HYPOTHESIS_PROFILE=long make unit``.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.errors import BadRequest, InvalidImage
from core.imaging import grayscale
from functions_gcp import events
from tests.helper import encode, hopper

settings.register_profile("ci", max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("long", max_examples=20_000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

SEEDS = [encode(hopper(), fmt) for fmt in ("JPEG", "PNG", "GIF", "WEBP", "TIFF", "BMP")]


@given(st.binary(max_size=4096))
def test_grayscale_of_arbitrary_bytes_raises_only_invalid_image(data: bytes) -> None:
    with contextlib.suppress(InvalidImage):
        grayscale(data, max_pixels=4_000_000)


@given(st.sampled_from(SEEDS), st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), max_size=12),
       st.integers(0, 100))  # fmt: skip
def test_grayscale_of_mutated_images_raises_only_invalid_image(
    seed: bytes, flips: list[tuple[int, int]], cut: int
) -> None:
    data = bytearray(seed)
    for position, value in flips:
        data[position % len(data)] = value
    data = data[: max(1, len(data) - cut * len(data) // 100)]
    try:
        result = grayscale(bytes(data), max_pixels=4_000_000)
    except InvalidImage:
        return
    assert result.data and result.content_type.startswith("image/")


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=20,
)


@given(st.sampled_from([events.FINALIZED, events.PUBLISHED, "x.y.z"]), json_values)
def test_storage_event_parser_raises_only_bad_request(event_type: str, data: object) -> None:
    with contextlib.suppress(BadRequest):
        events.storage_object(event_type, data)


@given(json_values, st.dictionaries(st.text(max_size=30), st.text(max_size=30), max_size=5))
def test_pubsub_message_parser_raises_only_bad_request(payload: object, attributes: dict[str, str]) -> None:
    message = {"message": {"data": base64.b64encode(json.dumps(payload).encode()).decode(), "attributes": attributes}}
    try:
        events.message_json(events.PUBLISHED, message)
        events.storage_object(events.PUBLISHED, message)
        events.delivery_attempts(message)
    except BadRequest:
        pass
