"""`make demo`'s driver, run as a user runs it."""

from __future__ import annotations

import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from devstack.demo import sample_files

ROOT = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.e2e, pytest.mark.emulator]


def test_demo_tells_the_whole_story_and_exits_zero() -> None:
    run = subprocess.run([sys.executable, "-m", "devstack.demo"], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout + run.stderr
    lines = [line.strip() for line in run.stdout.splitlines()]
    steps = [line for line in lines[lines.index("summary") + 2 :] if line.endswith((" yes", " NO"))]
    assert len(steps) == 10 and all(line.endswith(" yes") for line in steps), "\n".join(steps)
    samples = sample_files(ROOT / "samples")
    assert any(f"{len(samples)} jobs, {len(samples) - 1} DONE" in line for line in steps)
    assert any("503 frozen" in line for line in steps)
    (cutover,) = [line for line in steps if line.startswith("cutover:")]
    frozen = float(re.search(r"frozen (\d+\.\d+) s", cutover).group(1))  # type: ignore[union-attr]
    assert 0 < frozen <= 5, cutover
    assert any("live sync: an upload during the migration" in line for line in steps)
    (rollback,) = [line for line in steps if line.startswith("rollback:")]
    assert re.search(r"[1-9]\d* copied back, held \d+\.\d+ s; GCP serves Azure's 2 jobs, POST 202", rollback), rollback
    assert "truncated.jpg" in run.stdout
    assert "everything stopped; all as expected" in run.stdout
    # Nothing it started still listens.
    for port in re.findall(r"127\.0\.0\.1:(\d+)", run.stdout):
        with socket.socket() as sock:
            assert sock.connect_ex(("127.0.0.1", int(port))) != 0, f"port {port} is still open"


def test_demo_fails_when_an_image_does_not_end_as_expected(tmp_path: Path) -> None:
    # A folder whose 'good' image is in fact broken: the demo must say so and exit 1.
    (tmp_path / "fine.jpg").write_bytes(b"not really a jpeg")
    run = subprocess.run(
        [sys.executable, "-m", "devstack.demo", "--samples", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 1, run.stdout + run.stderr
    assert "NOT as expected" in run.stdout
