"""Live sync at this machine's sustained rate: R_max, then a live migration and a cutover under uploads.

    python bench/live_sync.py [FOLDER] [--seconds 60] [--rates 2,3,4,6,8,10] [--rate-max R]

Both local clouds up as in a live run (``devstack.stacks.both_clouds``). Uploads are the folder's photos of
at most 1 MP (web-sized; the seed photos, else ``samples/``), cycled under distinct names, written straight
into the bucket from a thread at a steady rate.

1. **R_max**, the pipeline alone: each rate of ``--rates`` in turn for ``--seconds``. DONE keeps pace when no
   upload waited more than 2 s for DONE (the backlog never over 2 s) and upload-to-DONE p95 <= 1 s. R_max is the
   highest rate that keeps pace, trying upwards and stopping at the first that does not (``--rate-max`` skips
   the search). CPU seconds per upload of each process at R_max: the baseline.
2. **Live**, at 0.8 x R_max: ``plan --live`` (replication on, the bulk copy of what is there), ``--seconds`` of
   uploads, the replication lag from the run record, then ``cutover`` while uploads go on. Printed: the lag p50
   and p95 (target p95 <= 2 s), ``frozen_seconds`` (target <= 5 s), CPU seconds per upload of each process and
   the ratio to the baseline's (target <= 1.5: replication adds at most 50%; the bulk copy of what the R_max
   rounds left in the bucket runs in the same window), and the notifications replication got against the copies
   it made (the run record's change records; a copy writes the blob and one bookkeeping blob, the rest none).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import itertools
import json
import subprocess
import sys
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.chain_latency import (  # noqa: E402
    group_cpu_seconds,
    percentile,
    photo_folder,
    renderable_jpegs,
    stack_processes,
)
from core.clouds.azure_blob import AzureBlobObjectStore  # noqa: E402
from core.clouds.gcs import GcsObjectStore  # noqa: E402
from core.errors import NotFound  # noqa: E402
from core.jobs import JsonJobStore, Status, job_id_for  # noqa: E402
from devstack.environment import environment  # noqa: E402
from devstack.stacks import both_clouds  # noqa: E402
from migrate.runs import CHANGES, run_key  # noqa: E402

KEEPS_PACE_BACKLOG_S, KEEPS_PACE_P95_S = 2.0, 1.0
TARGET_LAG_P95_S, TARGET_FROZEN_S, TARGET_CPU_RATIO = 2.0, 5.0, 1.5


class Uploads:
    """Writes the photos into the bucket ``rate`` times a second from a thread; ``sent`` maps job id to send time."""

    def __init__(self, bucket: GcsObjectStore, photos: list[bytes], rate: float) -> None:
        self.bucket, self.photos, self.rate = bucket, photos, rate
        self.sent: dict[str, datetime] = {}
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.run = uuid.uuid4().hex[:6]

    def _run(self) -> None:
        n, next_at = 0, time.monotonic()
        while not self.stop.is_set():
            data = self.photos[n % len(self.photos)]
            key = f"uploads/sync-{self.run}-{n:05d}.jpg"
            sent = datetime.now(UTC)
            self.bucket.put(key, data, content_type="image/jpeg")
            self.sent[job_id_for(key, hashlib.md5(data).hexdigest())] = sent
            n += 1
            next_at += 1 / self.rate
            time.sleep(max(0.0, next_at - time.monotonic()))

    def __enter__(self) -> Uploads:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join()


def latencies(jobs: JsonJobStore, sent: dict[str, datetime], timeout: float = 180) -> list[float]:
    """Upload-to-DONE seconds of each job (from the record's DONE time), waiting up to ``timeout`` for them."""
    found: dict[str, float] = {}
    deadline = time.monotonic() + timeout
    while len(found) < len(sent) and time.monotonic() < deadline:
        for job_id, at in list(sent.items()):
            if job_id in found:
                continue
            with contextlib.suppress(NotFound):
                job = jobs.get(job_id)
                if job.status is Status.DONE:
                    found[job_id] = (job.updated - at).total_seconds()
        time.sleep(0.25)
    return list(found.values()) + [float("inf")] * (len(sent) - len(found))


def cpu(processes: dict[str, int]) -> dict[str, float]:
    return {name: group_cpu_seconds(pid) for name, pid in processes.items()}


def run_rate(bucket: GcsObjectStore, jobs: JsonJobStore, photos: list[bytes], rate: float, seconds: float,
             processes: dict[str, int]) -> tuple[list[float], dict[str, float], int]:  # fmt: skip
    """(latencies, CPU seconds per upload by process, uploads) for ``seconds`` of uploads at ``rate``."""
    before, own = cpu(processes), time.process_time()
    with Uploads(bucket, photos, rate) as uploads:
        time.sleep(seconds)
    found = latencies(jobs, uploads.sent)
    after = cpu(processes)
    count = len(uploads.sent)
    spent = {name: (after[name] - before[name]) / count for name in processes}
    spent["this bench (uploads, push forwarder, Event Grid's stand-in)"] = (time.process_time() - own) / count
    return found, spent, count


def keeps_pace(found: list[float]) -> bool:
    return max(found) <= KEEPS_PACE_BACKLOG_S and percentile(found, 95) <= KEEPS_PACE_P95_S


def cli(*args: str) -> dict[str, Any]:
    """``python -m migrate ARGS --json`` as an operator runs it, in a process of its own; its last JSON line, and
    ``steps``: the seconds from each numbered progress line (``1. frozen ...``) to the next, as they were printed."""
    command = [sys.executable, "-u", "-m", "migrate", *args, "--json"]
    stamps: list[tuple[float, str]] = []
    with subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, text=True) as child:
        assert child.stdout is not None
        for line in child.stdout:
            stamps.append((time.monotonic(), line.strip()))
    lines = [line for _, line in stamps if line.startswith("{")]
    result = json.loads(lines[-1]) if lines else {}
    result["exit"] = child.returncode
    numbered = [(at, line.split(".", 1)[0]) for at, line in stamps if line[:1].isdigit()]
    result["steps"] = {f"{a}->{b}": round(t2 - t1, 2) for (t1, a), (t2, b) in itertools.pairwise(numbered)}
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", nargs="?", type=Path, default=None)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--rates", default="2,3,4,6,8,10", help="rates to try for R_max, ascending")
    parser.add_argument("--rate-max", type=float, default=None, help="skip the search: R_max is this")
    args = parser.parse_args(argv)
    folder = args.folder or photo_folder()
    photos = renderable_jpegs(folder, max_pixels=1_000_000)
    if not photos:
        print(f"no JPEG of at most 1 MP that renders in {folder}", file=sys.stderr)
        return 2
    print(f"{len(photos)} photos of at most 1 MP from {folder}; {args.seconds:.0f} s per rate; both clouds up")
    with contextlib.ExitStack() as exits:
        gcp, azure = both_clouds(exits, bucket=f"sync-{uuid.uuid4().hex[:6]}", container=f"sync-{uuid.uuid4().hex[:6]}")
        if gcp.pubsub is None:
            print(f"cannot measure: {gcp.note}", file=sys.stderr)
            return 2
        exits.enter_context(environment({**gcp.env(), **azure.env()}))
        bucket, records = GcsObjectStore(gcp.bucket), AzureBlobObjectStore(azure.container)
        jobs = JsonJobStore(bucket)
        processes = {**stack_processes(gcp), **{f"azure {k}": v for k, v in stack_processes(azure).items()}}

        # 1. R_max, the pipeline alone.
        rmax, baseline = args.rate_max, {}
        rates = [args.rate_max] if args.rate_max else [float(r) for r in args.rates.split(",")]
        for rate in rates:
            found, spent, count = run_rate(bucket, jobs, photos, rate, args.seconds, processes)
            ok = keeps_pace(found)
            print(
                f"  {rate:5.1f}/s: {count} uploads, upload->DONE p50 {percentile(found, 50):.2f} s, p95 "
                f"{percentile(found, 95):.2f} s, max {max(found):.2f} s: {'keeps pace' if ok else 'falls behind'}"
            )
            if not ok and not args.rate_max:
                break
            rmax, baseline = rate, spent
        if rmax is None:
            print("R_max: below the lowest rate tried", file=sys.stderr)
            return 1
        print(f"R_max = {rmax:g}/s (10/s asked of the cutover in docs/migration.md); CPU s per upload, pipeline "
              "alone: " + ", ".join(f"{k} {v:.3f}" for k, v in baseline.items() if v > 0.0005))  # fmt: skip

        # 2. A live migration at 0.8 x R_max, and its cutover under uploads.
        rate = 0.8 * rmax
        source, dest = f"gs://{gcp.bucket}", f"az://{azure.container}"
        assert gcp.push is not None
        from migrate.runs import status

        # Go live with the bucket quiet, and let the bulk copy of what the rounds above left finish: the window
        # measured below is replication under uploads, not the bulk copy.
        gcp.push.wait_idle("/on-upload")  # every bucket notification goes there
        planned = cli("plan", source, dest, "--live")
        if planned["exit"] != 0:
            print(f"plan --live failed: {planned}", file=sys.stderr)
            return 1
        started = time.monotonic()
        while status(records, planned["run_id"])["state"] == "running" and time.monotonic() - started < 600:
            time.sleep(1)
        bulk = status(records, planned["run_id"])
        print(f"  bulk copy: {bulk['objects']} objects, {bulk['state']} in {time.monotonic() - started:.0f} s")
        gcp.push.wait_idle("/migrate-replicate")
        notified = gcp.push.posted("migrate-replicate")
        again = gcp.push.posted("migrate-replicate", again=True)
        done_before = sum(1 for _ in records.list(run_key(planned["run_id"], CHANGES)))
        before, own = cpu(processes), time.process_time()
        with Uploads(bucket, photos, rate) as uploads:
            time.sleep(args.seconds)
            replication = status(records, planned["run_id"])["replication"]
            # Everything per upload is taken at this one moment: the cutover below goes on under uploads.
            after, own_after, count = cpu(processes), time.process_time(), len(uploads.sent)
            notifications = gcp.push.posted("migrate-replicate") - notified
            redelivered = gcp.push.posted("migrate-replicate", again=True) - again
            copies = sum(1 for _ in records.list(run_key(planned["run_id"], CHANGES))) - done_before
            cutover = cli("cutover", source, dest, "--no-final-verify", "--timeout", "240")
        spent = {name: (after[name] - before[name]) / count for name in processes}
        spent["this bench (uploads, push forwarder, Event Grid's stand-in)"] = (own_after - own) / count
        pipeline = sum(v for k, v in baseline.items())
        with_replication = sum(spent.values())
        ratio = with_replication / pipeline if pipeline else float("nan")
        lag95 = replication.get("lag_p95_s")
        print(f"live at {rate:.1f}/s (0.8 x R_max) for {args.seconds:.0f} s: {count} uploads")
        print(f"  replication lag p50 {replication.get('lag_p50_s')} s, p95 {lag95} s (target <= {TARGET_LAG_P95_S} s)")
        print(f"  cutover exit {cutover['exit']}: frozen {cutover.get('frozen_seconds')} s (target <= "
              f"{TARGET_FROZEN_S} s), drain {cutover.get('drain_seconds')} s; seconds between its steps (1 frozen, "
              f"2 drained, 3 verified, 4 switched): {cutover['steps']}")  # fmt: skip
        print(
            "  CPU s per upload with replication: " + ", ".join(f"{k} {v:.3f}" for k, v in spent.items() if v > 0.0005)
        )
        print(f"  all processes: {with_replication:.3f} s per upload against {pipeline:.3f} alone: {ratio:.2f}x "
              f"(target <= {TARGET_CPU_RATIO})")  # fmt: skip
        print(f"  migrate_replicate: {notifications} notifications ({notifications / count:.1f} per upload, "
              f"{redelivered} of them redelivered), {copies} copies (each: the blob and 1 bookkeeping write), "
              f"{notifications - copies} that wrote nothing (duplicates, superseded, ignored)")  # fmt: skip
        frozen = cutover.get("frozen_seconds") or float("inf")
        met = lag95 is not None and lag95 <= TARGET_LAG_P95_S
        met = met and frozen <= TARGET_FROZEN_S and ratio <= TARGET_CPU_RATIO
        print("targets " + ("met" if met else "NOT met"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
