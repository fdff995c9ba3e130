"""The benchmarks' photos: on a fresh clone (no shared seed photos) they fall back to ``samples/``, whose truncated
JPEG must not be among them (it never reaches DONE, and the in-process baseline raises on it)."""

from __future__ import annotations

from pathlib import Path

from bench.chain_latency import renderable_jpegs

SAMPLES = Path(__file__).resolve().parents[2] / "samples"


def test_only_jpegs_that_render_and_fit_the_pixel_bound_are_used() -> None:
    everything = renderable_jpegs(SAMPLES)
    assert (SAMPLES / "sunset.jpg").read_bytes() in everything
    assert (SAMPLES / "truncated.jpg").read_bytes() not in everything
    assert renderable_jpegs(SAMPLES, max_pixels=1) == []
