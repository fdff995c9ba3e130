"""Upload-to-DONE latency through the local function hosts, with the processing time as baseline.

    python bench/chain_latency.py [FOLDER] [--count 50] [--rate 7] [--cloud gcp|azure|both] [--way store|api|both]
                                  [--stack alone|dev]

For each cloud it starts the whole local stack (GCP: ``devstack.gcp``, fake-gcs-server,
the Pub/Sub emulator and functions-framework; Azure: ``devstack.azure``, Azurite,
Event Grid's stand-in and the devhost running function_app.py), uploads ``--count``
photos (the folder's JPEGs cycled under distinct names, ``--rate`` a second), once
straight into ``uploads/`` and once through ``POST /jobs``, and reads each job record
once it is DONE. Latency is the record's DONE time minus the moment the upload
was sent, so polling does not blur it; the record's ``created`` splits it into
upload to accepted (the storage event) and accepted to DONE (the queue and the work). As the baseline
it times ``core.imaging.grayscale`` on the same photos in this process, and
prints p50 and p95 of both and their ratio: what the chain (notification,
two Pub/Sub pushes, the record writes) adds on top of the work itself.

``--stack dev`` starts both clouds together, as ``make dev`` does (one Azurite, Event Grid's stand-in
shared), and measures each cloud in turn with the other up: what users run. It also prints p99 and,
for the ten slowest jobs, the slower hop: upload to accepted (the storage event) or accepted to DONE
(the queue and the render), with the photo's size.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import json
import os
import statistics
import sys
import time
import urllib.request
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from core.errors import NotFound  # noqa: E402
from core.imaging import grayscale  # noqa: E402
from core.jobs import JsonJobStore, Status, job_id_for  # noqa: E402
from devstack.azure import AzureStack  # noqa: E402
from devstack.gcp import GcpStack  # noqa: E402

TARGET_P95_MS = {"gcp": 350, "azure": 400}
TARGET_DEV_P95_MS = 600
"""With both clouds up (``--stack dev``), for either cloud."""


def group_cpu_seconds(leader: int) -> float:
    """User + system CPU seconds of every live process in the process group ``leader`` leads (from /proc)."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == leader:  # pgrp
            total += int(fields[11]) + int(fields[12]) + int(fields[13]) + int(fields[14])  # utime stime cutime cstime
    return total / ticks


def stack_processes(stack: GcpStack | AzureStack) -> dict[str, int]:
    """Name -> process-group leader pid of each process of the stack."""
    found: dict[str, Any] = {}
    if isinstance(stack, GcpStack):
        found = {"fake-gcs-server": stack.gcs, "pubsub emulator": stack.pubsub,
                 **{f"ff {name}": host for name, host in stack.functions.items()}}  # fmt: skip
    else:
        found = {"azurite": stack.azurite, "devhost": stack.devhost}
    return {name: p.proc.pid for name, p in found.items() if p is not None and p.proc is not None}


def photo_folder() -> Path:
    """The shared seed photos where present, else the project's ``samples/``."""
    shared = ROOT.parent / "shared" / "data" / "seed-photos"
    return shared if shared.is_dir() else ROOT / "samples"


def renderable_jpegs(folder: Path, *, max_pixels: int | None = None) -> list[bytes]:
    """The folder's JPEGs that render (``samples/`` holds a truncated one, to show a failure) and, with
    ``max_pixels``, have at most that many pixels."""
    from PIL import Image

    from core.errors import InvalidImage

    found = []
    for path in sorted(folder.iterdir()):
        if path.suffix.lower() not in (".jpg", ".jpeg"):
            continue
        data = path.read_bytes()
        with Image.open(io.BytesIO(data)) as image:
            if max_pixels is not None and image.width * image.height > max_pixels:
                continue
        try:
            grayscale(data)
        except InvalidImage:
            continue
        found.append(data)
    return found


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(pct / 100 * (len(ordered) - 1)))]


def measure(stack: GcpStack | AzureStack, photos: list[bytes], count: int, interval: float, way: str) -> Any:
    """Per job: (upload to DONE ms, upload to accepted ms, megapixels, its place in the sequence), ``count`` uploads."""
    os.environ.update(stack.env())
    store = stack.store()
    jobs = JsonJobStore(store)
    uploaded: dict[str, datetime] = {}
    sizes: dict[str, float] = {}
    order: dict[str, int] = {}
    run = uuid.uuid4().hex[:6]
    next_at = time.monotonic()
    for index in range(count):
        data = photos[index % len(photos)]
        sent = datetime.now(UTC)
        if way == "store":
            key = f"uploads/bench-{run}-{index:03d}.jpg"
            store.put(key, data, content_type="image/jpeg")
            job_id = job_id_for(key, hashlib.md5(data).hexdigest())
        else:
            request = urllib.request.Request(
                f"{stack.api_url}/jobs",
                data=data,
                method="POST",
                headers={
                    "Content-Type": "image/jpeg",
                    "Content-Disposition": f'attachment; filename="bench-{run}-{index}.jpg"',
                },
            )
            with urllib.request.urlopen(request, timeout=60) as response:
                job_id = json.loads(response.read())["id"]
        uploaded[job_id] = sent
        sizes[job_id] = megapixels(data)
        order[job_id] = index
        next_at += interval
        time.sleep(max(0.0, next_at - time.monotonic()))
    latencies: dict[str, tuple[float, float, float, int]] = {}
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
                latencies[job_id] = (
                    (job.updated - at).total_seconds() * 1000,
                    (job.created - at).total_seconds() * 1000,
                    sizes[job_id],
                    order[job_id],
                )
        time.sleep(0.2)
    if len(latencies) < len(uploaded):
        print(f"only {len(latencies)} of {len(uploaded)} jobs finished in 120 s", file=sys.stderr)
        return None
    return list(latencies.values())


def megapixels(data: bytes) -> float:
    import io

    from PIL import Image

    with Image.open(io.BytesIO(data)) as im:
        return im.width * im.height / 1e6


@contextlib.contextmanager
def stacks(kind: str, cloud: str) -> Any:
    """The stack to measure ``cloud`` on: alone, or both clouds up as ``make dev`` runs them."""
    if kind == "alone":
        with GcpStack() if cloud == "gcp" else AzureStack() as stack:
            yield stack
        return
    from devstack.stacks import both_clouds

    with contextlib.ExitStack() as exits:
        gcp, azure = both_clouds(exits, bucket=f"bench-{uuid.uuid4().hex[:6]}", container="bench")
        yield gcp if cloud == "gcp" else azure


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", nargs="?", type=Path, default=None)
    parser.add_argument("--count", type=int, default=50)
    parser.add_argument("--rate", type=float, default=7.0, help="uploads a second (default 7)")
    parser.add_argument("--cloud", choices=("gcp", "azure", "both"), default="both")
    parser.add_argument("--way", choices=("store", "api", "both"), default="both")
    parser.add_argument("--warmup", type=int, default=0, help="uploads sent and waited for before measuring")
    parser.add_argument("--stack", choices=("alone", "dev"), default="alone",
                        help="each cloud's stack alone (default), or both up as make dev runs them")  # fmt: skip
    args = parser.parse_args(argv)
    folder = args.folder or photo_folder()
    photos = renderable_jpegs(folder)
    if not photos:
        print(f"no JPEG that renders in {folder}", file=sys.stderr)
        return 2

    baseline = []
    for index in range(args.count):
        start = time.perf_counter()
        grayscale(photos[index % len(photos)])
        baseline.append((time.perf_counter() - start) * 1000)
    b50, b95 = percentile(baseline, 50), percentile(baseline, 95)
    interval = 1 / args.rate
    print(f"{args.count} uploads of {len(photos)} photos from {folder}, {args.rate:g} a second")
    print(f"  grayscale() alone (baseline):   p50 {b50:7.1f} ms   p95 {b95:7.1f} ms")

    status = 0
    clouds = ("gcp", "azure") if args.cloud == "both" else (args.cloud,)
    for cloud in clouds:
        saved = dict(os.environ)
        try:
            with stacks(args.stack, cloud) as stack:
                if isinstance(stack, GcpStack) and stack.pubsub is None:
                    print(f"  gcp: cannot measure the chain: {stack.note}")
                    status = 2
                    continue
                for way in ("store", "api") if args.way == "both" else (args.way,):
                    processes = stack_processes(stack)
                    before = {name: group_cpu_seconds(pid) for name, pid in processes.items()}
                    own = time.process_time()
                    if args.warmup:  # each host's first jobs pay its imports and its clients' first connections
                        measure(stack, photos[-1:], args.warmup, interval, way)
                    found = measure(stack, photos, args.count, interval, way)
                    if found is None:
                        status = 1
                        continue
                    report(args.stack == "dev", cloud, way, found, b50, b95, baseline)
                    spent = {name: group_cpu_seconds(pid) - before[name] for name, pid in processes.items()}
                    spent["this bench (uploads, Event Grid's stand-in)"] = time.process_time() - own
                    print(
                        f"  {cloud} {way:5}   CPU seconds per job: "
                        + ", ".join(f"{name} {seconds / args.count:.3f}" for name, seconds in spent.items())
                    )
        finally:
            os.environ.clear()
            os.environ.update(saved)
    return status


def report(
    dev: bool,
    cloud: str,
    way: str,
    found: list[tuple[float, float, float, int]],
    b50: float,
    b95: float,
    baseline: list[float],
) -> None:
    chain, accepted = [f[0] for f in found], [f[1] for f in found]
    p50, p95, p99 = percentile(chain, 50), percentile(chain, 95), percentile(chain, 99)
    host = "functions-framework chain" if cloud == "gcp" else "devhost"
    target = TARGET_DEV_P95_MS if dev else TARGET_P95_MS[cloud]
    print(f"  {cloud} {way:5} upload -> DONE ({host}): p50 {p50:7.1f} ms   p95 {p95:7.1f} ms   max {max(chain):7.1f} ms"
          f"   (target p95 <= {target} ms: {'met' if p95 <= target else 'NOT met'})")  # fmt: skip
    print(f"  {cloud} {way:5}   upload -> accepted: p50 {percentile(accepted, 50):7.1f} ms   p95 "
          f"{percentile(accepted, 95):7.1f} ms; accepted -> DONE: p50 "
          f"{percentile([f[0] - f[1] for f in found], 50):7.1f} ms")  # fmt: skip
    print(f"  {cloud} {way:5}   ratio to the baseline: p50 {p50 / b50:7.1f}x   p95 {p95 / b95:7.1f}x;"
          f" mean overhead {statistics.mean(chain) - statistics.mean(baseline):.1f} ms; p99 {p99:7.1f} ms")  # fmt: skip
    slowest = sorted(found, reverse=True)[:10]
    hops = [("event" if a >= c - a else "queue+render", c, mp, n) for c, a, mp, n in slowest]
    print(
        f"  {cloud} {way:5}   ten slowest (total ms, slower hop, MP, #): "
        + ", ".join(f"{c:.0f} {hop} ({mp:.1f}, #{n})" for hop, c, mp, n in hops)
    )


if __name__ == "__main__":
    sys.exit(main())
