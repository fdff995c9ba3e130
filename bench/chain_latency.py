"""Upload-to-DONE latency through the local function hosts, with the processing time as baseline.

    python bench/chain_latency.py [FOLDER] [--count 50] [--cloud gcp|azure|both]

For each cloud it starts the whole local stack (GCP: ``devstack.gcp``, fake-gcs-server,
the Pub/Sub emulator and functions-framework; Azure: ``devstack.azure``, Azurite
and the devhost running function_app.py), uploads ``--count`` photos to ``uploads/``
(the folder's JPEGs cycled under distinct names, one every 100 ms) and reads
each job record once it is DONE. Latency is the record's DONE time minus the
moment the upload call returned, so polling does not blur it. As the baseline
it times ``core.imaging.grayscale`` on the same photos in this process, and
prints p50 and p95 of both and their ratio: what the chain (notification,
two Pub/Sub pushes, the record writes) adds on top of the work itself.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from core.errors import NotFound  # noqa: E402
from core.imaging import grayscale  # noqa: E402
from core.jobs import JsonJobStore, Status, job_id_for  # noqa: E402
from devstack.azure import AzureStack  # noqa: E402
from devstack.gcp import GcpStack  # noqa: E402


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(pct / 100 * (len(ordered) - 1)))]


def measure(stack: GcpStack | AzureStack, photos: list[bytes], count: int, interval: float) -> list[float] | None:
    """Upload-to-DONE milliseconds for ``count`` uploads straight to the store."""
    os.environ.update(stack.env())
    store = stack.store()
    jobs = JsonJobStore(store)
    uploaded: dict[str, datetime] = {}
    for index in range(count):
        data = photos[index % len(photos)]
        key = f"uploads/bench-{index:03d}.jpg"
        store.put(key, data, content_type="image/jpeg")
        uploaded[job_id_for(key, hashlib.md5(data).hexdigest())] = datetime.now(UTC)
        time.sleep(interval)
    latencies: dict[str, float] = {}
    deadline = time.monotonic() + 120
    while len(latencies) < len(uploaded) and time.monotonic() < deadline:
        for job_id, at in uploaded.items():
            if job_id in latencies:
                continue
            try:
                job = jobs.get(job_id)
            except NotFound:
                continue
            if job.status is Status.DONE:
                latencies[job_id] = (job.updated - at).total_seconds() * 1000
        time.sleep(0.2)
    if len(latencies) < len(uploaded):
        print(f"only {len(latencies)} of {len(uploaded)} jobs finished in 120 s", file=sys.stderr)
        return None
    return list(latencies.values())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", nargs="?", type=Path, default=None)
    parser.add_argument("--count", type=int, default=50)
    parser.add_argument("--interval", type=float, default=0.1, help="seconds between uploads (default 0.1)")
    parser.add_argument("--cloud", choices=("gcp", "azure", "both"), default="both")
    args = parser.parse_args(argv)
    shared = ROOT.parent / "shared" / "data" / "seed-photos"
    folder = args.folder or (shared if shared.is_dir() else ROOT / "samples")
    photos = [p.read_bytes() for p in sorted(folder.iterdir()) if p.suffix.lower() in (".jpg", ".jpeg")]
    if not photos:
        print(f"no JPEGs in {folder}", file=sys.stderr)
        return 2

    baseline = []
    for index in range(args.count):
        start = time.perf_counter()
        grayscale(photos[index % len(photos)])
        baseline.append((time.perf_counter() - start) * 1000)
    b50, b95 = percentile(baseline, 50), percentile(baseline, 95)
    print(f"{args.count} uploads of {len(photos)} photos from {folder}, one every {args.interval * 1000:.0f} ms")
    print(f"  grayscale() alone (baseline):   p50 {b50:7.1f} ms   p95 {b95:7.1f} ms")

    status = 0
    clouds = ("gcp", "azure") if args.cloud == "both" else (args.cloud,)
    for cloud in clouds:
        saved = dict(os.environ)
        try:
            with GcpStack() if cloud == "gcp" else AzureStack() as stack:
                if isinstance(stack, GcpStack) and stack.pubsub is None:
                    print(f"  gcp: cannot measure the chain: {stack.note}")
                    status = 2
                    continue
                chain = measure(stack, photos, args.count, args.interval)
        finally:
            os.environ.clear()
            os.environ.update(saved)
        if chain is None:
            status = 1
            continue
        p50, p95 = percentile(chain, 50), percentile(chain, 95)
        host = "functions-framework chain" if cloud == "gcp" else "devhost"
        print(f"  {cloud} upload -> DONE ({host}): p50 {p50:7.1f} ms   p95 {p95:7.1f} ms   max {max(chain):7.1f} ms")
        print(f"  {cloud} ratio to the baseline:   p50 {p50 / b50:7.1f}x   p95 {p95 / b95:7.1f}x;"
              f" mean overhead {statistics.mean(chain) - statistics.mean(baseline):.1f} ms")  # fmt: skip
    return status


if __name__ == "__main__":
    sys.exit(main())
