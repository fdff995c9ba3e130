"""Planning a migration of a million objects, in memory: time and peak memory, flat in the bucket's size.

    python bench/plan_scale.py [--objects 1000000] [--baseline 100000] [--batch-size 200]

The source is synthetic and lazy (``SyntheticSource``: objects made as they are
listed, the way a paged listing arrives), the run records live in an in-memory
store and the queue discards what it is sent. So the figure is ``fanout.plan``'s
own cost per object: listing order, batching, message building, and the run record.
As the baseline it plans ``--baseline`` objects in the same run and prints both
with their ratio: the time should grow with the count, the peak memory should not.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import time
import tracemalloc
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from core.memory import InMemoryObjectStore  # noqa: E402
from core.ports import ObjectDetails, ObjectInfo  # noqa: E402
from migrate import fanout  # noqa: E402
from migrate.copy import phases  # noqa: E402


class SyntheticSource:
    """``count`` objects spread over the pipeline's prefixes, made as they are listed (nothing kept)."""

    def __init__(self, count: int) -> None:
        self.count = count

    def list(
        self, prefix: str = "", *, start_offset: str | None = None, end_offset: str | None = None
    ) -> Iterator[ObjectDetails]:
        for key in self._keys(prefix):
            if (start_offset is not None and key < start_offset) or (end_offset is not None and key >= end_offset):
                continue
            digest = hashlib.md5(key.encode()).hexdigest()
            yield ObjectDetails(key=key, size=4096 + len(key), md5=digest, crc32c="AAAAAA==", generation="1")

    def _keys(self, prefix: str) -> Iterator[str]:
        # A quarter each under jobs/, results/ and uploads/, the rest elsewhere; in key order per prefix.
        share = self.count // 4
        groups = {"jobs/": share, "other/": self.count - 3 * share, "results/": share, "uploads/": share}
        for group, size in groups.items():
            if group.startswith(prefix) or prefix.startswith(group):
                for index in range(size):
                    key = f"{group}{index:09d}.bin"
                    if key.startswith(prefix):
                        yield key

    def read_range(self, key: str, generation: str | None, start: int, end: int) -> bytes:
        raise NotImplementedError("planning reads no bytes")

    def signed_url(self, key: str, generation: str | None) -> str:
        raise NotImplementedError("planning signs nothing")


class DurableRecords(InMemoryObjectStore):
    """The run's records, as the destination container keeps them: the run record in memory, each manifest
    (a held batch) only counted, as it is written to storage and leaves the planner's memory."""

    def __init__(self) -> None:
        super().__init__()
        self.manifest_bytes = 0

    def put(self, key: str, data: bytes, **options: Any) -> Any:
        if "/manifests/" in key:  # written to the container: not the planner's memory
            self.manifest_bytes += len(data)
            return ObjectInfo(key=key, size=len(data), version="1")
        return super().put(key, data, **options)


class DiscardingQueue:
    """A TaskQueue that counts what it is sent and keeps nothing."""

    def __init__(self) -> None:
        self.sent = 0

    def send(self, payload: Mapping[str, Any]) -> str:
        self.sent += 1
        return str(self.sent)


def list_only(count: int) -> float:
    """The baseline: list the same source in the plan's phase order, and do nothing else."""
    started = time.perf_counter()
    listed = sum(1 for _, objects in phases(SyntheticSource(count), "") for _ in objects)
    assert listed == count
    return time.perf_counter() - started


def plan(count: int, batch_size: int, *, trace: bool = False) -> dict[str, float]:
    """Plan ``count`` objects: its time (untraced), or with ``trace`` its peak traced memory (tracemalloc slows it)."""
    queue = DiscardingQueue()
    if trace:
        tracemalloc.start()
    started = time.perf_counter()
    run = fanout.plan(
        SyntheticSource(count),
        DurableRecords(),
        queue,
        source_uri="gs://synthetic",
        dest_uri="az://discard",
        max_objects=batch_size,
    )
    seconds = time.perf_counter() - started
    peak = 0
    if trace:
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    assert run.objects == count and run.planned
    return {"seconds": seconds, "peak_mib": peak / 2**20, "batches": run.batches, "sent": queue.sent}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--objects", type=int, default=1_000_000)
    parser.add_argument("--baseline", type=int, default=100_000)
    parser.add_argument("--batch-size", type=int, default=200)
    args = parser.parse_args(argv)
    listing = list_only(args.objects)
    small, large = plan(args.baseline, args.batch_size), plan(args.objects, args.batch_size)
    small["peak_mib"] = plan(args.baseline, args.batch_size, trace=True)["peak_mib"]
    large["peak_mib"] = plan(args.objects, args.batch_size, trace=True)["peak_mib"]
    for count, figures in ((args.baseline, small), (args.objects, large)):
        per_object = figures["seconds"] * 1e6 / count
        print(f"plan {count:,} objects: {figures['seconds']:.1f} s ({per_object:.1f} µs an object), "
              f"{figures['batches']:,.0f} batches ({figures['sent']:,.0f} sent at once, the rest held), "
              f"peak traced memory {figures['peak_mib']:.2f} MiB")  # fmt: skip
    print(f"baseline, the same {args.objects:,} objects merely listed in phase order: {listing:.1f} s; "
          f"planning costs {large['seconds'] / listing:.2f}x the listing")  # fmt: skip
    print(f"{args.objects / args.baseline:.0f}x the objects: {large['seconds'] / small['seconds']:.1f}x the time, "
          f"{large['peak_mib'] / small['peak_mib']:.2f}x the peak memory")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
