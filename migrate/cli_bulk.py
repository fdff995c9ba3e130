"""The bulk commands of ``python -m migrate`` (``migrate.cli`` parses and dispatches): ``copy``, ``verify`` and
``plan``, each printing its progress and summary and mapping it to the exit code."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections import Counter
from collections.abc import Callable, Iterator
from typing import IO, Any

from core.errors import CoreError, TransientError
from core.ports import CAVEATS, ObjectDetails
from migrate import actor, rules
from migrate.locations import Location, UsageError
from migrate.throttle import Throttle, parse_size

PRICE_VARS = {
    "MIGRATE_PRICE_EGRESS_PER_GIB": 0.12,
    "MIGRATE_PRICE_CLASS_A_PER_10K": 0.05,
    "MIGRATE_PRICE_CLASS_B_PER_10K": 0.004,
}


def copy_command(args: argparse.Namespace, source: Any, dest: Any, source_at: Location, dest_at: Location) -> int:
    from migrate.copy import Options, Outcome, run_copy

    try:
        tiers = rules.parse_tier_map(args.tier_map)
        limits = (args.max_rate, parse_size(args.bwlimit) if args.bwlimit else None)
        throttle = Throttle(max_rate=limits[0], bwlimit=limits[1]) if any(limits) else None
    except CoreError as exc:
        raise UsageError(str(exc)) from exc
    can_sign = source.can_sign()
    if args.mode == "server-side" and not can_sign:
        raise UsageError(
            "--mode server-side needs credentials that can sign GCS URLs (a service-account key, or a service "
            "account with IAM signBlob); these cannot, so use --mode stream"
        )
    server_side = args.mode == "server-side" or (args.mode == "auto" and can_sign)
    options = Options(
        block_size=args.block_size,
        encode_names=args.encode_names,
        tiers=tiers,
        dry_run=args.dry_run,
        server_side=server_side,
        throttle=throttle,
    )
    report: IO[str] | None = open(args.report, "w", encoding="utf-8") if args.report else None  # noqa: SIM115
    progress = _progress_bar()
    failures: list[Outcome] = []

    def on_outcome(outcome: Outcome) -> None:
        if report is not None:
            report.write(json.dumps(outcome.to_dict(), ensure_ascii=False) + "\n")
        if outcome.action == "failed":
            failures.append(outcome)
        progress(outcome)

    try:
        summary = run_copy(
            source,
            dest,
            source_prefix=source_at.prefix,
            dest_prefix=dest_at.prefix,
            workers=args.workers,
            options=options,
            on_outcome=on_outcome,
        )
    except CoreError as exc:
        raise UsageError(f"the copy could not list {source_at} or {dest_at}: {exc}") from exc
    finally:
        progress(None)
        if report is not None:
            report.close()
    for outcome in failures[:20]:
        print(f"failed: {outcome.key}: {outcome.error}", file=sys.stderr)
    if len(failures) > 20:
        print(f"... and {len(failures) - 20} more failures (see --report)", file=sys.stderr)
    result = summary.to_dict()
    if args.dry_run:
        cannot = dict(summary.cannot_carry)
        try:
            older = source.noncurrent_versions(source_at.prefix)
        except CoreError as exc:
            raise UsageError(f"the dry run could not list the versions of {source_at}: {exc}") from exc
        if older:
            cannot["noncurrent-versions"] = older
        result.update(
            would_copy=summary.would_copy,
            estimate_usd=estimate(summary.would_copy, summary.bytes),
            cannot_carry=cannot,
        )
        print(f"dry run: {summary.would_copy} objects, {summary.bytes:,} bytes would be copied; "
              f"{summary.skipped} skipped, {summary.failed} cannot be copied; "
              f"estimated GCS cost ${result['estimate_usd']['total']:.4f}")  # fmt: skip
        for caveat, count in sorted(cannot.items()):
            print(f"cannot carry: {count} with {CAVEATS[caveat]}")
    else:
        rate = summary.bytes / summary.seconds / 1e6 if summary.seconds else 0.0
        print(f"copied {summary.copied}, skipped {summary.skipped}, failed {summary.failed}; "
              f"{summary.bytes:,} bytes in {summary.seconds:.1f} s ({rate:.1f} MB/s)")  # fmt: skip
    if args.json:
        print(json.dumps(result))
    return 1 if summary.failed else 0


def verify_command(args: argparse.Namespace, source: Any, dest: Any, source_at: Location, dest_at: Location) -> int:
    from migrate.verify import run_verify

    try:
        found = run_verify(
            source, dest, source_prefix=source_at.prefix, dest_prefix=dest_at.prefix, download=args.download
        )
    except CoreError as exc:
        raise UsageError(f"the verify could not list or read {source_at} or {dest_at}: {exc}") from exc
    for key in found.missing[:20]:
        print(f"missing: {key}")
    for key in found.extra[:20]:
        print(f"extra: {key}")
    for item in found.different[:20]:
        print(f"different: {item['key']}: {'; '.join(item['problems'])}")
    for item in found.unverifiable[:20]:
        print(f"unverifiable: {item['key']}: {item['reason']}")
    counts = found.to_dict()
    print(f"verify{' --download' if args.download else ''}: {counts['same']} same, {counts['missing']} missing, "
          f"{counts['extra']} extra, {counts['different']} different ({counts['properties_different']} in "
          f"properties only), {counts['unverifiable']} unverifiable")  # fmt: skip
    if args.json:
        print(json.dumps(counts))
    return 0 if found.clean else 1


def estimate(objects: int, size: int) -> dict[str, float]:
    """GCS charges for a copy out of GCS, at the prices in ``PRICE_VARS`` (overridable by environment)."""
    price = {name: float(os.environ.get(name) or default) for name, default in PRICE_VARS.items()}
    egress = size / 2**30 * price["MIGRATE_PRICE_EGRESS_PER_GIB"]
    reads = objects / 10_000 * price["MIGRATE_PRICE_CLASS_B_PER_10K"]
    lists = (objects / 1000 + 1) / 10_000 * price["MIGRATE_PRICE_CLASS_A_PER_10K"]
    return {
        "egress": round(egress, 6),
        "operations": round(reads + lists, 6),
        "total": round(egress + reads + lists, 6),
    }


def _progress_bar() -> Callable[[Any], None]:
    """tqdm on a terminal (objects, bytes, rate, ETA); nothing otherwise."""
    if not sys.stdout.isatty():
        return lambda outcome: None
    from tqdm import tqdm

    bar = tqdm(unit="B", unit_scale=True, unit_divisor=1024, dynamic_ncols=True, desc="copying")
    count = 0

    def update(outcome: Any) -> None:
        nonlocal count
        if outcome is None:
            bar.close()
            return
        count += 1
        bar.set_postfix(objects=count, refresh=False)
        bar.update(outcome.bytes if outcome.action == "copied" else 0)

    return update


def plan_command(args: argparse.Namespace, source: Any, source_at: Location, dest_at: Location) -> int:
    from core.clouds.azure_blob import AzureBlobObjectStore
    from core.clouds.azure_queue import AzureQueueTaskQueue
    from migrate.fanout import BATCH_QUEUE, plan
    from migrate.runs import new_run_id

    if args.batch_size < 1:
        raise UsageError("--batch-size must be at least 1")
    if args.max_batches is not None and args.max_batches < 1:
        raise UsageError("--max-batches must be at least 1")
    if args.dry_run:
        return plan_dry_run(args, source, source_at, dest_at)
    records = AzureBlobObjectStore(dest_at.container)
    run_id = new_run_id()
    try:
        if args.live:
            from core.clouds.gcs import GcsObjectStore
            from core.clouds.replication_feed import replication_feed
            from migrate import live

            bucket = GcsObjectStore(source_at.container)
            running = live.live_run(bucket)
            if running is not None:
                raise UsageError(f"{source_at} already replicates for run {running.run_id}: cut over or abort it first")
            settings = live.Live(run_id, dest_at.container, source_at.prefix, dest_at.prefix, args.live_deletes)
            feed = None if args.feed == "manual" else replication_feed(source_at.container)
            # Before the listing, and proven by a probe: no change falls between the two.
            live.go_live(bucket, records, feed, settings, str(source_at), timeout=args.probe_timeout)
        run = plan(
            source,
            records,
            AzureQueueTaskQueue(BATCH_QUEUE),
            run_id=run_id,
            live=args.live,
            source_uri=str(source_at),
            dest_uri=str(dest_at),
            source_prefix=source_at.prefix,
            dest_prefix=dest_at.prefix,
            max_objects=args.batch_size,
            max_bytes=args.batch_bytes,
            max_rate=args.max_rate,
            bwlimit=parse_size(args.bwlimit) if args.bwlimit else None,
            max_batches=args.max_batches,
            part_bytes=args.part_bytes,
            block_size=args.block_size,
            started_by=actor.of_cli(),
        )
    except TransientError as exc:
        print(f"the plan could not be made: {exc}. Run it again", file=sys.stderr)
        return 1
    except CoreError as exc:
        raise UsageError(f"the plan could not be made: {exc}") from exc
    print(run.run_id)
    print(f"planned {run.objects} objects ({run.bytes:,} bytes) in {run.batches} batches on queue {BATCH_QUEUE}",
          file=sys.stderr)  # fmt: skip
    if args.live:
        print(f"live sync: every change under {source_at} is replicated to {dest_at}, which is a replica "
              f"until `python -m migrate cutover`", file=sys.stderr)  # fmt: skip
    if args.json:
        print(json.dumps({"run_id": run.run_id, "batches": run.batches, "objects": run.objects, "bytes": run.bytes,
                          "live": run.live}))  # fmt: skip
    return 0


class _Counted:
    """A source whose listing counts, as it passes, what a copy cannot carry."""

    def __init__(self, source: Any) -> None:
        self.source, self.cannot_carry = source, Counter[str]()

    def list(
        self, prefix: str = "", *, start_offset: str | None = None, end_offset: str | None = None
    ) -> Iterator[ObjectDetails]:
        for obj in self.source.list(prefix, start_offset=start_offset, end_offset=end_offset):
            self.cannot_carry.update(obj.caveats)
            yield obj

    def read_range(self, key: str, generation: str | None, start: int, end: int) -> bytes:
        return bytes(self.source.read_range(key, generation, start, end))

    def signed_url(self, key: str, generation: str | None) -> str:
        return str(self.source.signed_url(key, generation))

    def noncurrent_versions(self, prefix: str = "") -> int:
        return int(self.source.noncurrent_versions(prefix))


def plan_dry_run(args: argparse.Namespace, source: Any, source_at: Location, dest_at: Location) -> int:
    """The plan's batches and what a copy cannot carry, with nothing enqueued or written."""
    from core.memory import InMemoryObjectStore, InMemoryTaskQueue
    from migrate.fanout import plan

    counted = _Counted(source)
    try:
        run = plan(counted, InMemoryObjectStore(), InMemoryTaskQueue(), source_uri=str(source_at),
                   dest_uri=str(dest_at), source_prefix=source_at.prefix, dest_prefix=dest_at.prefix,
                   max_objects=args.batch_size, max_bytes=args.batch_bytes, part_bytes=args.part_bytes,
                   block_size=args.block_size)  # fmt: skip
        older = source.noncurrent_versions(source_at.prefix)
    except CoreError as exc:
        raise UsageError(f"the dry run could not list {source_at}: {exc}") from exc
    cannot = dict(counted.cannot_carry) | ({"noncurrent-versions": older} if older else {})
    print(f"dry run: {run.objects} objects ({run.bytes:,} bytes) in {run.batches} batches; nothing was enqueued")
    for caveat, count in sorted(cannot.items()):
        print(f"cannot carry: {count} with {CAVEATS[caveat]}")
    if args.json:
        print(json.dumps({"batches": run.batches, "objects": run.objects, "bytes": run.bytes, "cannot_carry": cannot}))
    return 0
