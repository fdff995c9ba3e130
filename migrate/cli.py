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
from collections.abc import Callable
from typing import Any

from core import logs
from core.errors import ConfigError, CoreError, NotFound, Refused, TransientError
from migrate import actor
from migrate.locations import Location, UsageError, open_ends, parse_location
from migrate.wiring import open_sides

USAGE_ERROR = 2


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
    plan.add_argument(
        "--feed",
        choices=("make", "manual"),
        default="make",
        help="with --live: make the bucket's replication notification, and `finish` removes it (make, the default),"
        " or it is managed elsewhere (manual)",
    )
    plan.add_argument(
        "--probe-timeout", type=float, default=60.0, help="with --live: seconds for the feed's first delivery (60)"
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
        from migrate.cli_bulk import copy_command, plan_command, verify_command

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
