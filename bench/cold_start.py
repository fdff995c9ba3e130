"""Cold start per entry point: import time, the HTTP function's first answer, peak RSS; beside the old figures.

    python bench/cold_start.py [--runs 7] [--baseline REV]

For each GCP target (``python -c 'import main; main.TARGET'``: the target is
imported on first access) and the Azure app (``import function_app``), in a
fresh interpreter each time: the median wall time of ``--runs`` runs minus the
median of a bare interpreter's in the same run, and the peak RSS. For the GCP
API: the time from starting ``functions-framework --target api`` to its first
answered request (the page). The same figures are measured in the same run on
``--baseline`` (default: the commit before this benchmark was added), checked
out into a temporary worktree, and printed beside the new ones with the targets.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from devstack import lifetime

ROOT = Path(__file__).resolve().parent.parent
GCP_TARGETS = ["on_upload", "process_job", "on_dead_letter", "api", "migrate_batch", "migrate_batch_dead_letter"]
TARGETS_S = {"import": 0.45, "process_job": 0.35, "first answer": 0.6}
ENV = {"GCS_BUCKET": "bench", "GOOGLE_CLOUD_PROJECT": "bench", "STORAGE_EMULATOR_HOST": "http://127.0.0.1:9",
       "AZURE_STORAGE_CONTAINER": "bench", "AzureWebJobsStorage": "UseDevelopmentStorage=true"}  # fmt: skip


def timed(code: str, cwd: Path) -> tuple[float, int]:
    """Wall seconds and peak RSS (KiB) of ``python -c code`` in ``cwd``."""
    env = {**os.environ, **ENV, "PYTHONPATH": str(cwd)}
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=cwd, env=env)
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"python -c {code!r} failed in {cwd}")
    return elapsed, usage.ru_maxrss


def first_answer(cwd: Path) -> float:
    """Seconds from starting functions-framework for ``api`` to its first answered request."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = lifetime.child_env({**ENV, "PYTHONPATH": str(cwd)})  # it dies with this bench, however that ends
    argv = [sys.executable, "-m", "functions_framework", "--target", "api", "--source", str(cwd / "main.py"),
            "--signature-type", "http", "--host", "127.0.0.1", "--port", str(port)]  # fmt: skip
    start = time.perf_counter()
    proc = subprocess.Popen(argv, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while time.perf_counter() - start < 30:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as response:
                    if response.status == 200:
                        return time.perf_counter() - start
            except OSError:
                time.sleep(0.005)
        raise RuntimeError("functions-framework did not answer in 30 s")
    finally:
        proc.terminate()
        proc.wait()


def measure(cwd: Path, runs: int) -> dict[str, tuple[float, float]]:
    """Per entry point: (median import seconds above the bare interpreter, peak RSS MiB)."""
    codes = {"bare": "pass", **{t: f"import main; main.{t}" for t in GCP_TARGETS}, "azure app": "import function_app"}
    samples: dict[str, list[tuple[float, int]]] = {name: [] for name in codes}
    for _ in range(runs):  # interleaved, so that a busy moment touches every figure alike
        for name, code in codes.items():
            samples[name].append(timed(code, cwd))
    bare = statistics.median(s[0] for s in samples["bare"])
    found = {name: (statistics.median(s[0] for s in runs_) - bare, max(s[1] for s in runs_) / 1024)
             for name, runs_ in samples.items() if name != "bare"}  # fmt: skip
    answers = sorted(first_answer(cwd) for _ in range(max(3, runs // 2)))
    found["api first answer"] = (statistics.median(answers), 0.0)
    found["bare interpreter"] = (bare, max(s[1] for s in samples["bare"]) / 1024)
    return found


def default_baseline() -> str:
    added = subprocess.run(["git", "log", "--diff-filter=A", "--format=%H", "--", "bench/cold_start.py"], cwd=ROOT,
                           capture_output=True, text=True).stdout.split()  # fmt: skip
    return f"{added[-1]}~1" if added else "HEAD"


def target_for(name: str) -> float:
    if name == "api first answer":
        return TARGETS_S["first answer"]
    return TARGETS_S["process_job"] if name == "process_job" else TARGETS_S["import"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--baseline", default=None, help="git revision to compare with (default: before this bench)")
    args = parser.parse_args(argv)
    baseline = args.baseline or default_baseline()
    folder = Path(tempfile.mkdtemp(prefix="cold-start-"))
    old: dict[str, tuple[float, float]] = {}
    try:
        made = subprocess.run(["git", "worktree", "add", "--detach", str(folder / "old"), baseline], cwd=ROOT,
                              capture_output=True, text=True)  # fmt: skip
        if made.returncode == 0:
            old = measure(folder / "old", args.runs)
        else:
            print(f"no baseline ({baseline}): {made.stderr.strip()}", file=sys.stderr)
        new = measure(ROOT, args.runs)
    finally:
        subprocess.run(["git", "worktree", "remove", "--force", str(folder / "old")], cwd=ROOT, capture_output=True)
        shutil.rmtree(folder, ignore_errors=True)
    print(f"cold start, median of {args.runs} fresh interpreters, minus the bare one; baseline {baseline}")
    print(f"  {'entry point':<26} {'old s':>7} {'new s':>7} {'ratio':>6} {'target':>7} {'met':>4} "
          f"{'old MiB':>8} {'new MiB':>8}")  # fmt: skip
    failed = 0
    for name, (seconds, rss) in new.items():
        before = old.get(name, (float("nan"), float("nan")))
        target = None if name == "bare interpreter" else target_for(name)
        met = "" if target is None else ("yes" if seconds <= target else "NO")
        failed += met == "NO"
        ratio = before[0] / seconds if seconds else float("nan")
        print(f"  {name:<26} {before[0]:7.3f} {seconds:7.3f} {ratio:5.1f}x {target or 0:7.2f} {met:>4} "
              f"{before[1]:8.1f} {rss:8.1f}")  # fmt: skip
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
