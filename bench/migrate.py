"""``python -m migrate copy`` against rclone, on the same fake-gcs-server and Azurite, in one run.

    python bench/migrate.py [--small 1000] [--large 4] [--many 5000] [--rounds 3]

Three sets: N objects of 4 KiB, M objects of 32 MiB, and K objects of 4 KiB (where
start-up weighs less). For each, in interleaved
rounds, each into a fresh container: ours (``python -m migrate copy``, 32
workers), rclone with its default flags, rclone tuned (``--transfers 32
--checkers 32``), and the destination's ceiling: the same objects merely
written to Azurite from Python, 16 threads, no source read, once with the Azure
SDK and once with the REST puts our copier uses. Each of our rounds ends with a
clean ``verify --download`` (not timed). Medians are printed: seconds,
objects/s, MB/s, the ratios, and the CPU seconds each run cost the copier,
fake-gcs-server and Azurite, all three sharing this machine's cores. Also the
peak RSS of our copy of the large set.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from google.cloud import storage  # noqa: E402

from core.clouds.azure_destination import AzureBlobDestination  # noqa: E402
from core.ports import ObjectDetails  # noqa: E402
from devstack.emulators import Azurite, FakeGcs  # noqa: E402
from devstack.environment import environment  # noqa: E402
from devstack.rclone import rclone  # noqa: E402

TICK = os.sysconf("SC_CLK_TCK")


def populate(bucket: str, count: int, size: int) -> None:
    client = storage.Client(project="local")
    client.create_bucket(bucket)
    payload = os.urandom(size)

    def put(index: int) -> None:
        client.bucket(bucket).blob(f"set/{index:05d}.bin").upload_from_string(payload[:-8] + index.to_bytes(8, "big"))

    with ThreadPoolExecutor(16) as pool:
        list(pool.map(put, range(count)))


def fresh_container() -> str:
    name = f"bench-{uuid.uuid4().hex[:10]}"
    AzureBlobDestination(name).create()
    return name


def process_cpu(pid: int) -> float:
    """User + system CPU seconds of a process and its direct children (Azurite runs under a node wrapper)."""
    total = 0.0
    with open(f"/proc/{pid}/task/{pid}/children") as children:
        pids = [pid, *map(int, children.read().split())]
    for one in pids:
        with open(f"/proc/{one}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
        total += (int(fields[11]) + int(fields[12])) / TICK
    return total


def own_cpu() -> float:
    """CPU seconds of this process and of its finished children (the copiers run as children)."""
    me, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + children.ru_utime + children.ru_stime


@dataclass
class Sample:
    seconds: float
    cpu: dict[str, float]
    extra: dict[str, float] = field(default_factory=dict)


def measure(action: Callable[[], dict[str, float] | None], gcs: FakeGcs, azurite: Azurite) -> Sample:
    assert gcs.proc is not None and azurite.proc is not None
    before = (own_cpu(), process_cpu(gcs.proc.pid), process_cpu(azurite.proc.pid))
    start = time.perf_counter()
    extra = action() or {}
    seconds = time.perf_counter() - start
    after = (own_cpu(), process_cpu(gcs.proc.pid), process_cpu(azurite.proc.pid))
    cpu = {name: b - a for name, a, b in zip(("copier", "fake-gcs", "azurite"), before, after, strict=True)}
    return Sample(seconds, cpu, extra)


def ours(bucket: str, workers: int, containers: list[str]) -> dict[str, float]:
    """Run our CLI; its own copy-phase seconds (without start-up) and its peak RSS in KiB. The container it
    filled is appended to ``containers``."""
    containers.append(fresh_container())
    code = (
        "import sys; from migrate.cli import main; rc = main(sys.argv[1:]);"
        "hwm = [l for l in open('/proc/self/status') if l.startswith('VmHWM')];"
        "print(hwm[0].split()[1] if hwm else 0, file=sys.stderr); sys.exit(rc)"
    )
    argv = ["copy", f"gs://{bucket}", f"az://{containers[-1]}", "--workers", str(workers), "--json"]
    run = subprocess.run([sys.executable, "-c", code, *argv], cwd=ROOT, capture_output=True, text=True, check=False)
    if run.returncode != 0:
        raise SystemExit(f"our copy failed: {run.stdout}{run.stderr}")
    summary = json.loads(run.stdout.strip().splitlines()[-1])
    return {"copy_phase": float(summary["seconds"]), "peak_kib": float(run.stderr.strip().splitlines()[-1])}


def verify_download(bucket: str, container: str) -> None:
    """Our copy, proven after the timed run: every blob downloaded and hashed against the source's MD5."""
    argv = [sys.executable, "-m", "migrate", "verify", f"gs://{bucket}", f"az://{container}", "--download"]
    run = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, check=False)
    if run.returncode != 0:
        raise SystemExit(f"verify --download of our copy failed: {run.stdout[-2000:]}{run.stderr[-2000:]}")


def rclone_copy(bucket: str, flags: list[str], gcs: FakeGcs, azurite: Azurite) -> None:
    done = rclone(["copy", f"gcs:{bucket}", f"az:{fresh_container()}", *flags], gcs, azurite)
    if done.returncode != 0:
        raise SystemExit(f"rclone {flags} failed: {done.stderr[-2000:]}")


def ceiling(count: int, size: int, rest: bool) -> None:
    """Merely write the same objects to Azurite, 16 threads, no source read: the SDK's puts or our REST ones."""
    dest = AzureBlobDestination(fresh_container())
    payload = os.urandom(size)

    def put(index: int) -> None:
        key = f"set/{index:05d}.bin"
        if rest:
            dest.put(ObjectDetails(key=key, size=size), payload)
        else:
            dest.container.upload_blob(key, payload, overwrite=True)

    with ThreadPoolExecutor(16) as pool:
        list(pool.map(put, range(count)))


def bench_set(label: str, count: int, size: int, rounds: int, gcs: FakeGcs, azurite: Azurite) -> dict[str, float]:
    bucket = f"bench-{uuid.uuid4().hex[:10]}"
    populate(bucket, count, size)
    containers: list[str] = []
    contenders: dict[str, Callable[[], dict[str, float] | None]] = {
        "ours": lambda: ours(bucket, 32, containers),
        "rclone default": lambda: rclone_copy(bucket, [], gcs, azurite),
        "rclone tuned": lambda: rclone_copy(bucket, ["--transfers", "32", "--checkers", "32"], gcs, azurite),
        "ceiling (SDK)": lambda: ceiling(count, size, rest=False),
        "ceiling (REST)": lambda: ceiling(count, size, rest=True),
    }
    samples: dict[str, list[Sample]] = {name: [] for name in contenders}
    for _ in range(rounds):  # interleaved, so a slow moment of the machine hits every contender
        for name, action in contenders.items():
            samples[name].append(measure(action, gcs, azurite))
            if name == "ours":
                verify_download(bucket, containers[-1])  # not timed: each round ends proven
    median = {name: statistics.median(s.seconds for s in runs) for name, runs in samples.items()}
    megabytes = count * size / 1e6
    print(f"\n{label}: {count} objects of {size // 1024} KiB ({megabytes:.0f} MB), median of {rounds} rounds")
    print(f"  {'':<16} {'seconds':>8} {'objects/s':>10} {'MB/s':>8}   CPU s: copier  fake-gcs  azurite  (sum/cores)")
    cores = os.cpu_count() or 1
    for name, runs in samples.items():
        cpu = {k: statistics.median(s.cpu[k] for s in runs) for k in runs[0].cpu}
        floor = sum(cpu.values()) / cores
        secs = median[name]
        print(f"  {name:<16} {secs:8.2f} {count / secs:10.1f} {megabytes / secs:8.1f}   "
              f"{cpu['copier']:13.2f} {cpu['fake-gcs']:9.2f} {cpu['azurite']:8.2f}  ({floor:.2f} s)")  # fmt: skip
    phase = statistics.median(s.extra["copy_phase"] for s in samples["ours"])
    print(f"  ours, copy phase only (its own clock, without interpreter start-up and imports): {phase:.2f} s, "
          f"{count / phase:.1f} objects/s, {megabytes / phase:.1f} MB/s")  # fmt: skip
    print(f"  ours / rclone tuned:     {median['rclone tuned'] / median['ours']:.2f}x")
    print(f"  ours / rclone default:   {median['rclone default'] / median['ours']:.2f}x")
    print(f"  ours / ceiling (SDK):    {median['ceiling (SDK)'] / median['ours']:.2f}")
    print(f"  ours / ceiling (REST):   {median['ceiling (REST)'] / median['ours']:.2f}")
    if size >= 1024 * 1024:
        peak = max(s.extra["peak_kib"] for s in samples["ours"])
        print(f"  peak RSS of our copy:    {peak / 1024:.0f} MiB")
    return median


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--small", type=int, default=1000)
    parser.add_argument("--large", type=int, default=4)
    parser.add_argument(
        "--many", type=int, default=5000, help="a second small set, where start-up weighs less (0: skip)"
    )
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    with FakeGcs() as gcs, Azurite() as azurite, environment({**gcs.env(), **azurite.env()}):
        os.environ["GOOGLE_CLOUD_PROJECT"] = "local"
        small = bench_set("small set", args.small, 4 * 1024, args.rounds, gcs, azurite)
        large = bench_set("large set", args.large, 32 * 1024 * 1024, args.rounds, gcs, azurite)
        many = bench_set("many small", args.many, 4 * 1024, args.rounds, gcs, azurite) if args.many else None
    print("\ntargets: small >= 1.2x tuned rclone and >= 0.85 of the ceiling; large >= 1x tuned rclone in MB/s")
    print(f"  small: {small['rclone tuned'] / small['ours']:.2f}x tuned rclone, "
          f"{small['ceiling (SDK)'] / small['ours']:.2f} of the SDK ceiling")  # fmt: skip
    print(f"  large: {large['rclone tuned'] / large['ours']:.2f}x tuned rclone")
    if many:
        print(f"  many small ({args.many:,}): {many['rclone tuned'] / many['ours']:.2f}x tuned rclone")
    return 0


if __name__ == "__main__":
    sys.exit(main())
