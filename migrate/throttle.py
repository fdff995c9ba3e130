"""Throttling a copy: at most ``max_rate`` objects a second and ``bwlimit`` bytes a second, over all workers.

Each object reserves its place on two schedules, one for objects and one for
bytes, and waits until both allow it to start; so the long-run rates never
pass the caps, however many workers share the throttle. ``clock`` and ``sleep``
are injectable, so the arithmetic is tested without waiting.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable

from core.errors import BadRequest

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]?)(i?B?)?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}


def parse_size(text: str) -> float:
    """``10M`` / ``512K`` / ``2.5G`` / ``1000`` (binary units, as rclone's ``--bwlimit``) in bytes."""
    match = _SIZE.match(text)
    if not match or float(match.group(1)) <= 0:
        raise BadRequest(f"{text!r} is not a size: give bytes a second, e.g. 500K, 10M or 1G")
    return float(match.group(1)) * _UNITS[match.group(2).upper()]


class Throttle:
    def __init__(
        self,
        *,
        max_rate: float | None = None,
        bwlimit: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        for name, value in (("max_rate", max_rate), ("bwlimit", bwlimit)):
            if value is not None and value <= 0:
                raise BadRequest(f"{name} must be above 0, got {value}")
        self.max_rate, self.bwlimit = max_rate, bwlimit
        self.clock, self.sleep = clock, sleep
        self._next_object = self._next_byte = 0.0
        self._lock = threading.Lock()

    def take(self, size: int) -> float:
        """Wait until one more object of ``size`` bytes may start; return the seconds waited."""
        with self._lock:
            now = self.clock()
            start = now
            if self.max_rate:
                start = max(start, self._next_object)
                self._next_object = max(now, self._next_object) + 1 / self.max_rate
            if self.bwlimit:
                start = max(start, self._next_byte)
                self._next_byte = max(now, self._next_byte) + size / self.bwlimit
        wait = start - now
        if wait > 0:
            self.sleep(wait)
        return max(wait, 0.0)
