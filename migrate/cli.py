"""``python -m migrate``: copy and verify a GCS bucket (or prefix) into Azure Blob.

    python -m migrate copy   gs://BUCKET[/PREFIX] az://CONTAINER[/PREFIX] [--workers N] [--mode auto|server-side|stream]
                             [--dry-run] [--report FILE] [--json] [--encode-names] [--tier-map CLASS=Tier,...]
    python -m migrate verify gs://BUCKET[/PREFIX] az://CONTAINER[/PREFIX] [--download] [--json]
    python -m migrate plan   gs://BUCKET[/PREFIX] az://CONTAINER[/PREFIX] [--batch-size N] [--max-batches N]
                             [--max-rate N] [--bwlimit SIZE] [--dry-run] [--json]
    python -m migrate status RUN_ID [--container NAME] [--json]
    python -m migrate cutover gs://BUCKET[/PREFIX] az://CONTAINER[/PREFIX] [--run RUN_ID] [--json]   # seconds frozen
    python -m migrate abort  gs://BUCKET[/PREFIX] az://CONTAINER[/PREFIX] [--json]   # before the switch
    python -m migrate rollback gs://BUCKET[/PREFIX] az://CONTAINER[/PREFIX] [--timeout S] [--json]   # after it
    python -m migrate finish gs://BUCKET[/PREFIX] az://CONTAINER[/PREFIX] [--json]   # ends replication: no way back
    python -m migrate check  gs://BUCKET[/PREFIX] az://CONTAINER[/PREFIX] [--json]   # preflight: access on both sides

Exit codes: 0 success, 1 any object failed or differs (``check``: a permission is refused),
2 usage or configuration error (a wrong scheme, a missing bucket or container, bad credentials,
an unreachable endpoint).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections import Counter
from collections.abc import Callable, Iterator
from typing import IO, Any

from core import logs
from core.errors import ConfigError, CoreError, NotFound, Refused, TransientError
from core.ports import CAVEATS, ObjectDetails
from migrate import actor, rules
from migrate.locations import Location, UsageError, open_ends, parse_location
from migrate.throttle import Throttle, parse_size
from migrate.wiring import open_sides

USAGE_ERROR = 2
# GCS prices in USD for the dry-run estimate (internet egress to Azure, first TiB; operations per 10,000).
PRICE_VARS = {
    "MIGRATE_PRICE_EGRESS_PER_GIB": 0.12,
    "MIGRATE_PRICE_CLASS_A_PER_10K": 0.05,
    "MIGRATE_PRICE_CLASS_B_PER_10K": 0.004,
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m migrate", description="Move a GCS bucket to Azure Blob.")
    commands = parser.add_subparsers(dest="command", required=True)
    copy = commands.add_parser("copy", help="copy every object (skipping what is already there)")
    verify = commands.add_parser("verify", help="compare source and destination; exit 0 only if identical")
    plan = commands.add_parser("plan", help="enqueue batches for the fan-out functions; prints the run id")
    status = commands.add_parser("status", help="the progress of a planned run")
    cutover = commands.add_parser(
        "cutover", help="freeze GCP, wait for live replication to drain, verify what changed, switch to Azure"
    )
    abort = commands.add_parser("abort", help="before the switch: unfreeze GCP; Azure stays a replica")
    rollback = commands.add_parser(
        "rollback", help="after the switch: hold Azure, copy back what it made, make GCP the primary again"
    )
    finish = commands.add_parser(
        "finish", help="after a cutover or an abort: end replication, and with it the way back"
    )
    check = commands.add_parser("check", help="preflight: prove access on both sides, name each missing role")
    for sub in (copy, verify, plan, cutover, check, abort, rollback, finish):
        sub.add_argument("source", help="gs://BUCKET[/PREFIX]")
        sub.add_argument("dest", help="az://CONTAINER[/PREFIX]")
    for sub in (copy, verify, plan, status, cutover, check, abort, rollback, finish):
        sub.add_argument("--json", action="store_true", help="print a JSON summary as the last line")
    cutover.add_argument("--run", metavar="RUN_ID", help="the live run (default: the bucket's only live run)")
    cutover.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for the drain (default 60)")
    cutover.add_argument(
        "--no-final-verify", action="store_true", help="skip the full verify that runs after the switch"
    )
    rollback.add_argument(
        "--timeout", type=float, default=120.0, help="seconds to wait for Azure's running jobs to end (default 120)"
    )
    verify.add_argument(
        "--download",
        action="store_true",
        help="also read every blob and hash its bytes, independent of any stored checksum (slower)",
    )
    plan.add_argument("--batch-size", type=int, default=200, help="objects per batch (default 200)")
    plan.add_argument(
        "--dry-run", action="store_true", help="count batches and what cannot be carried; enqueue nothing"
    )
    plan.add_argument(
        "--live", action="store_true", help="also replicate every change as it lands, until the cutover (live sync)"
    )
    plan.add_argument(
        "--live-deletes",
        choices=("report", "replicate"),
        default="report",
        help="with --live: record deletes in the run (report, the default) or delete the blob too (replicate)",
    )
    plan.add_argument("--max-rate", type=float, metavar="N", help="each batch copies at most N objects a second")
    plan.add_argument("--bwlimit", metavar="SIZE", help="each batch copies at most SIZE bytes a second, e.g. 10M")
    plan.add_argument(
        "--max-batches", type=int, metavar="N", help="at most N batches of this run in flight at once (default: no cap)"
    )
    plan.add_argument("--batch-bytes", type=int, default=256 * 1024 * 1024, help=argparse.SUPPRESS)
    plan.add_argument("--part-bytes", type=int, default=512 * 1024 * 1024, help=argparse.SUPPRESS)
    plan.add_argument("--block-size", type=int, default=8 * 1024 * 1024, help=argparse.SUPPRESS)
    status.add_argument("run_id")
    status.add_argument(
        "--watch", action="store_true", help="redraw every 2 s until the run ends (a live run: until its cutover)"
    )
    status.add_argument(
        "--container",
        default=os.environ.get("MIGRATE_CONTAINER") or os.environ.get("AZURE_STORAGE_CONTAINER"),
        help="the destination container that holds the run record (default: $MIGRATE_CONTAINER or "
        "$AZURE_STORAGE_CONTAINER)",
    )
    copy.add_argument("--workers", type=int, default=32, help="objects copied at once (default 32)")
    copy.add_argument("--mode", choices=("auto", "server-side", "stream"), default="auto")
    copy.add_argument("--dry-run", action="store_true", help="list what would be copied, with a cost estimate")
    copy.add_argument("--report", metavar="FILE", help="write one JSON line per object")
    copy.add_argument("--encode-names", action="store_true", help="store names Azure rejects, percent-encoded")
    copy.add_argument("--tier-map", metavar="CLASS=Tier,...", help="override the storage class to tier mapping")
    copy.add_argument("--block-size", type=int, default=8 * 1024 * 1024, help=argparse.SUPPRESS)
    copy.add_argument("--max-rate", type=float, metavar="N", help="copy at most N objects a second (all workers)")
    copy.add_argument("--bwlimit", metavar="SIZE", help="copy at most SIZE bytes a second, e.g. 10M (all workers)")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)  # argparse exits 2 on its own usage errors
    logs.configure_cli()
    try:
        if args.command == "status":
            return status_command(args)
        source_at = parse_location(args.source, "gs")
        dest_at = parse_location(args.dest, "az")
        if getattr(args, "workers", 1) < 1:
            raise UsageError("--workers must be at least 1")
        if args.command == "check":
            return check_command(args, source_at, dest_at)
        if args.command in STEPS:
            return STEPS[args.command](args, source_at, dest_at)
        source, dest = open_ends(source_at, dest_at)
        if args.command == "copy":
            return copy_command(args, source, dest, source_at, dest_at)
        if args.command == "plan":
            return plan_command(args, source, source_at, dest_at)
        if args.command == "cutover":
            return cutover_command(args, source, dest, source_at, dest_at)
        return verify_command(args, source, dest, source_at, dest_at)
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return USAGE_ERROR


def check_command(args: argparse.Namespace, source_at: Location, dest_at: Location) -> int:
    """Exit 0 when every permission is there, 1 when one is refused, 2 when a side is missing or unreachable."""
    from migrate import check

    source, dest = open_ends(source_at, dest_at, checked=False)
    try:
        missing = check.preflight(source, dest, source_prefix=source_at.prefix, dest_prefix=dest_at.prefix)
    except NotFound as exc:
        raise UsageError(str(exc)) from exc
    except (ConfigError, TransientError) as exc:
        raise UsageError(f"cannot reach {source_at} or {dest_at}: {exc}") from exc
    for item in missing:
        print(f"missing: {item.message}")
    if not missing:
        print(f"ok: {source_at} can be listed and read, {dest_at} written and deleted by these credentials")
    if args.json:
        print(json.dumps(check.result(missing)))
    return 1 if missing else 0


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
            from migrate import live

            bucket = GcsObjectStore(source_at.container)
            running = live.live_run(bucket)
            if running is not None:
                raise UsageError(f"{source_at} already replicates for run {running.run_id}: cut over or abort it first")
            settings = live.Live(run_id, dest_at.container, source_at.prefix, dest_at.prefix, args.live_deletes)
            live.start(bucket, records, settings, str(source_at))  # before the listing: nothing falls between
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


def status_command(args: argparse.Namespace) -> int:
    import time

    from core.clouds.azure_blob import AzureBlobObjectStore
    from migrate.runs import status

    if not args.container:
        raise UsageError("say which container holds the run: --container NAME (or set MIGRATE_CONTAINER)")
    records = AzureBlobObjectStore(args.container)
    began, first = time.monotonic(), None
    while True:
        try:
            found = status(records, args.run_id)
        except NotFound as exc:
            raise UsageError(str(exc)) from exc
        except CoreError as exc:
            raise UsageError(f"cannot read the run record in az://{args.container}: {exc}") from exc
        first = first or found
        print(status_line(found, first, time.monotonic() - began), flush=True)
        ended = found["state"] != "running" and (not found.get("replication") or found.get("cutover"))
        if not args.watch or ended:
            break
        time.sleep(2)
    if args.json:
        print(json.dumps(found))
    return 1 if found["state"] == "failed" else 0


def status_line(found: dict[str, Any], first: dict[str, Any], seconds: float) -> str:
    """One line: objects and bytes with a bar, the rate and ETA since watching began, failures, lag, cutover."""
    done = found["copied"] + found["skipped"] + found["failed"]
    share = done / found["objects"] if found["objects"] else 1.0
    bar = "#" * int(share * 20) + "." * (20 - int(share * 20))
    line = (f"{found['run_id']}: {found['state']} [{bar}] {done}/{found['objects']} objects, "
            f"{found['bytes']:,}/{found['planned_bytes']:,} bytes; batches {found['batches_done']} done, "
            f"{found['batches_failed']} failed, {found['batches_pending']} pending; "
            f"{found['failed']} failed")  # fmt: skip
    moved = done - (first["copied"] + first["skipped"] + first["failed"])
    if seconds > 0 and moved > 0 and found["state"] == "running":
        rate = moved / seconds
        line += f"; {rate:.0f} objects/s, ETA {max(0, found['objects'] - done) / rate:.0f} s"
    replication = found.get("replication")
    if replication:
        p50, p95 = replication["lag_p50_s"], replication["lag_p95_s"]
        lag = f"lag p50 {p50:.2f} s p95 {p95:.2f} s" if p50 is not None and p95 is not None else "no recent change"
        line += f"; replication {lag}, {replication['pending']} pending, {replication['failed']} failed"
        cut = found.get("cutover")
        if found.get("rollback"):
            line += f"; rolled back, {found['rollback']['copied_back']} copied back: GCP is the primary"
        else:
            line += f"; cut over, frozen {cut['frozen_seconds']:.2f} s" if cut else "; Azure is a replica"
    return line


def step_command(args: argparse.Namespace, run: Callable[..., Any], ok: Callable[[Any], bool], *given: Any) -> int:
    """Run one use case of ``migrate.cutover``: its progress printed, its result as the last line with ``--json``;
    exit 0 when ``ok(result)``, 1 when it could not end or a cloud failed (run it again), 2 when refused."""
    try:
        result = run(*given, by=actor.of_cli(), progress=print)
    except Refused as exc:
        raise UsageError(str(exc)) from exc
    except TransientError as exc:  # a drain, Azure's jobs or a cloud: where it stopped is safe to run again from
        print(f"{args.command} stopped: {exc}. Run it again to go on", file=sys.stderr)
        if args.json:
            print(json.dumps({OUTCOME[args.command]: False, "error": str(exc)}))
        return 1
    except CoreError as exc:
        raise UsageError(f"the {args.command} stopped (run it again to go on, or `abort`): {exc}") from exc
    if getattr(result, "reason", ""):
        print(f"not switched: {result.reason}", file=sys.stderr)
    for item in getattr(result, "differences", ()):
        print(f"different: {item.key}: {'; '.join(item.problems)}")
    if args.json:
        print(json.dumps(result.record()))
    return 0 if ok(result) else 1


def cutover_command(args: argparse.Namespace, source: Any, dest: Any, source_at: Location, dest_at: Location) -> int:
    """Freeze, drain live replication, verify, switch: exit 0 once Azure is the primary and the final verify clean."""
    from migrate import cutover

    def run(ports: Any, **given: Any) -> Any:
        return cutover.cutover(ports, run_id=args.run, timeout=args.timeout, final_verify=not args.no_final_verify,
                               **given)  # fmt: skip

    def ok(result: Any) -> bool:
        if result.switched and not result.ok:
            print(f"switched, but the full verify found {result.final_differences} missing or different: run "
                  f"`verify` for the list", file=sys.stderr)  # fmt: skip
        return bool(result.ok)

    return step_command(args, run, ok, open_sides(source_at, dest_at, ends=True))


def abort_command(args: argparse.Namespace, source_at: Location, dest_at: Location) -> int:
    """Before the switch: unfreeze GCP and accept there what it left; Azure stays a replica."""
    from migrate import cutover

    return step_command(args, cutover.abort, lambda result: result.aborted, open_sides(source_at, dest_at))


def rollback_command(args: argparse.Namespace, source_at: Location, dest_at: Location) -> int:
    """After the switch: hold Azure, let its jobs end, copy back what it made, make GCP the primary."""
    from migrate import cutover

    def run(ports: Any, **given: Any) -> Any:
        return cutover.rollback(ports, timeout=args.timeout, **given)

    return step_command(args, run, lambda result: result.rolled_back, open_sides(source_at, dest_at))


def finish_command(args: argparse.Namespace, source_at: Location, dest_at: Location) -> int:
    """After a cutover or an abort: end replication and the way back."""
    from migrate import cutover

    return step_command(args, cutover.finish, lambda result: True, open_sides(source_at, dest_at))


OUTCOME = {"cutover": "switch", "abort": "aborted", "rollback": "rolled_back", "finish": "finished"}
"""The field of a step's ``--json`` line that says whether it ended."""
STEPS = {"abort": abort_command, "rollback": rollback_command, "finish": finish_command}
"""The steps that act on markers and records only: no copy source or destination is opened for them."""
