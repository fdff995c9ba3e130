"""``python -m migrate copy`` against rclone, on the same fake-gcs-server and Azurite, in one run.

    python bench/migrate.py [--small 1000] [--large 4]

Two sets: N objects of 4 KiB, and M objects of 32 MiB. For each: ours (32
workers), rclone with its default flags, rclone tuned (``--transfers 32
--checkers 32``), each into a fresh container; and the destination's ceiling:
the same objects merely written to Azurite from Python (16 threads, no source
read). It prints objects/s and MB/s, the ratios, and the peak RSS of our copy
of the large set.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from google.cloud import storage  # noqa: E402

from core.clouds.azure_blob import AzureBlobDestination  # noqa: E402
from devstack.emulators import Azurite, FakeGcs  # noqa: E402
from devstack.environment import environment  # noqa: E402
from devstack.rclone import rclone  # noqa: E402


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


def timed(action) -> float:  # type: ignore[no-untyped-def]
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


def ours(bucket: str, container: str, workers: int) -> tuple[float, int]:
    """Seconds, and the peak RSS (KiB) of the copying process."""
    code = (
        "import sys; from migrate.cli import main; rc = main(sys.argv[1:]);"
        "hwm = [l for l in open('/proc/self/status') if l.startswith('VmHWM')];"
        "print(hwm[0].split()[1] if hwm else 0, file=sys.stderr); sys.exit(rc)"
    )
    start = time.perf_counter()
    run = subprocess.run(
        [sys.executable, "-c", code, "copy", f"gs://{bucket}", f"az://{container}", "--workers", str(workers)],
        cwd=ROOT, capture_output=True, text=True, check=False,
    )  # fmt: skip
    seconds = time.perf_counter() - start
    if run.returncode != 0:
        raise SystemExit(f"our copy failed: {run.stdout}{run.stderr}")
    return seconds, int(run.stderr.strip().splitlines()[-1])


def ceiling(count: int, size: int, container: str) -> float:
    """Seconds to merely write the same objects to Azurite, 16 threads, no source read."""
    client = AzureBlobDestination(container).container
    payload = os.urandom(size)

    def put(index: int) -> None:
        client.upload_blob(f"set/{index:05d}.bin", payload, overwrite=True)

    with ThreadPoolExecutor(16) as pool:
        return timed(lambda: list(pool.map(put, range(count))))


def bench_set(label: str, count: int, size: int, gcs: FakeGcs, azurite: Azurite) -> dict[str, float]:
    bucket = f"bench-{uuid.uuid4().hex[:10]}"
    populate(bucket, count, size)
    results: dict[str, float] = {}
    peak_kib = 0
    seconds, peak_kib = ours(bucket, fresh_container(), 32)
    results["ours"] = seconds
    for name, flags in (("rclone default", []), ("rclone tuned", ["--transfers", "32", "--checkers", "32"])):
        container = fresh_container()
        start = time.perf_counter()
        done = rclone(["copy", f"gcs:{bucket}", f"az:{container}", *flags], gcs, azurite)
        results[name] = time.perf_counter() - start
        if done.returncode != 0:
            raise SystemExit(f"{name} failed: {done.stderr[-2000:]}")
    results["ceiling"] = ceiling(count, size, fresh_container())
    megabytes = count * size / 1e6
    print(f"\n{label}: {count} objects of {size // 1024} KiB ({megabytes:.0f} MB)")
    for name, secs in results.items():
        print(f"  {name:<15} {secs:7.2f} s  {count / secs:8.1f} objects/s  {megabytes / secs:8.1f} MB/s")
    print(f"  ours / rclone tuned:   {results['rclone tuned'] / results['ours']:.2f}x objects/s")
    print(f"  ours / rclone default: {results['rclone default'] / results['ours']:.2f}x objects/s")
    print(f"  ours / ceiling:        {results['ceiling'] / results['ours']:.2f}")
    if size >= 1024 * 1024:
        print(f"  peak RSS of our copy:  {peak_kib / 1024:.0f} MiB")
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--small", type=int, default=1000)
    parser.add_argument("--large", type=int, default=4)
    args = parser.parse_args(argv)
    with FakeGcs() as gcs, Azurite() as azurite, environment({**gcs.env(), **azurite.env()}):
        os.environ["GOOGLE_CLOUD_PROJECT"] = "local"
        small = bench_set("small set", args.small, 4 * 1024, gcs, azurite)
        large = bench_set("large set", args.large, 32 * 1024 * 1024, gcs, azurite)
    print("\ntargets: small >= 1.2x tuned rclone and >= 0.85 of the ceiling; large >= 1x tuned rclone in MB/s")
    print(f"  small: {small['rclone tuned'] / small['ours']:.2f}x, {small['ceiling'] / small['ours']:.2f} of ceiling")
    print(f"  large: {large['rclone tuned'] / large['ours']:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
