"""migrate.throttle: the objects/s and bytes/s caps of a copy, on an injected clock (nothing waits)."""

from __future__ import annotations

import pytest

from core.errors import BadRequest
from core.memory import InMemoryDestination, InMemorySource
from migrate.copy import Options, run_copy
from migrate.throttle import Throttle, parse_size


class Clock:
    def __init__(self) -> None:
        self.now, self.slept = 0.0, []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(round(seconds, 6))


def throttle(clock: Clock, **limits: float) -> Throttle:
    return Throttle(clock=clock, sleep=clock.sleep, **limits)


def test_objects_a_second() -> None:
    clock = Clock()
    gate = throttle(clock, max_rate=10)
    assert [round(gate.take(0), 6) for _ in range(5)] == [0, 0.1, 0.2, 0.3, 0.4]
    assert clock.slept == [0.1, 0.2, 0.3, 0.4]


def test_bytes_a_second() -> None:
    clock = Clock()
    gate = throttle(clock, bwlimit=1000)
    assert [gate.take(size) for size in (500, 500, 1000, 0)] == [0, 0.5, 1.0, 2.0]


def test_the_stricter_cap_decides() -> None:
    clock = Clock()
    gate = throttle(clock, max_rate=100, bwlimit=1000)
    assert [round(gate.take(size), 6) for size in (10, 10, 1000, 10)] == [0, 0.01, 0.02, 1.02]


def test_idle_time_is_not_saved_up_as_a_burst() -> None:
    clock = Clock()
    gate = throttle(clock, max_rate=1)
    gate.take(0)
    clock.now = 100.0  # a long pause
    assert [gate.take(0) for _ in range(3)] == [0, 1.0, 2.0]


SIZES = [("1000", 1000), ("512K", 524288), ("10M", 10485760), ("1.5G", 1.5 * 2**30), ("2MiB", 2 * 2**20)]


@pytest.mark.parametrize(("text", "size"), [*SIZES, ("3 mb", 3 * 2**20)])
def test_sizes(text: str, size: float) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["fast", "0", "-1M", "10X", ""])
def test_a_bad_size_names_what_it_expects(text: str) -> None:
    with pytest.raises(BadRequest, match="500K, 10M or 1G"):
        parse_size(text)


def test_a_cap_must_be_above_zero() -> None:
    with pytest.raises(BadRequest, match="max_rate"):
        Throttle(max_rate=0)


def test_a_copy_takes_its_place_for_each_object_it_copies_but_not_for_one_it_skips() -> None:
    source = InMemorySource("throttled")
    for index in range(4):
        source.add(f"o/{index}.bin", b"x" * 100)
    dest = InMemoryDestination()
    clock = Clock()
    options = Options(throttle=throttle(clock, bwlimit=100))
    assert run_copy(source, dest, workers=1, options=options).copied == 4
    assert clock.slept == [1.0, 2.0, 3.0]  # 100 bytes a second: one object a second after the first
    clock.slept.clear()
    assert run_copy(source, dest, workers=1, options=options).skipped == 4
    assert clock.slept == []
