"""``make demo``: the pipeline on the real emulators, end to end.

GCP: the whole local chain of ``devstack.gcp`` (fake-gcs-server, the Pub/Sub
emulator, functions-framework). Half the sample images are written straight
to the bucket, where the notification starts the job; half are POSTed to the
HTTP API. Without the Pub/Sub emulator, all go through the API and are
processed in-process, and the demo says so.

Azure: Azurite and the devhost running ``function_app.py``: blobs written
under ``uploads/`` reach the blob trigger through the devhost's stand-in for
Event Grid, and the rest goes through the HTTP API.

It prints one line per job and a summary, stops everything it started, and
exits 0 only when every image ended as expected: DONE, except
``truncated.jpg``, which must end FAILED with a reason (or be refused by the API).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import mimetypes
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.jobs import job_id_for
from devstack.azure import AzureStack
from devstack.emulators import ROOT
from devstack.environment import environment
from devstack.gcp import GcpStack

SAMPLES = ROOT / "samples"
EXPECTED_FAILURES = {"truncated.jpg"}
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".gif", ".webp", ".tif", ".tiff", ".bmp"}
TERMINAL = ("DONE", "FAILED")


@dataclass
class Row:
    cloud: str
    via: str
    name: str
    status: str
    detail: str
    content_type: str
    millis: float

    @property
    def as_expected(self) -> bool:
        if self.name in EXPECTED_FAILURES:
            return self.status in ("FAILED", "REFUSED") and bool(self.detail)
        return self.status == "DONE"


def sample_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)


def row_for(cloud: str, via: str, name: str, job: dict[str, Any], millis: float) -> Row:
    detail = job.get("result") if job["status"] == "DONE" else job.get("error")
    return Row(cloud, via, name, job["status"], detail or "", job.get("content_type") or "?", millis)


# Both clouds: the function hosts ----------------------------------------------------------------


def http(method: str, url: str, body: bytes | None = None, headers: dict[str, str] | None = None) -> tuple[int, Any]:
    request = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read() or b"{}")


def push_samples(cloud: str, stack: GcpStack | AzureStack, files: list[Path], *, bucket_events: bool) -> list[Row]:
    """Upload half the files to the store (its event starts the job) and half through the API; wait for all."""
    store = stack.store()
    started: dict[str, tuple[str, str, float]] = {}
    rows: list[Row] = []
    for index, path in enumerate(files):
        data = path.read_bytes()
        began = time.perf_counter()
        if bucket_events and index % 2 == 0:
            key = f"uploads/{path.name}"
            # As `gcloud storage cp` or `az storage blob upload` do: the type from the extension.
            store.put(key, data, content_type=mimetypes.guess_type(path.name)[0])
            started[job_id_for(key, hashlib.md5(data).hexdigest())] = ("bucket", path.name, began)
            continue
        disposition = f"attachment; filename*=UTF-8''{urllib.parse.quote(path.name)}"
        status, body = http("POST", f"{stack.api_url}/jobs", data, {"Content-Disposition": disposition})
        if status == 202:
            started[body["id"]] = ("http", path.name, began)
        else:
            millis = (time.perf_counter() - began) * 1000
            rows.append(Row(cloud, "http", path.name, "REFUSED", f"{status} {body.get('message')}", "-", millis))
    return rows + wait_all(cloud, stack.api_url, started)


def wait_all(cloud: str, api: str, started: dict[str, tuple[str, str, float]], timeout: float = 60) -> list[Row]:
    rows: list[Row] = []
    pending = dict(started)
    deadline = time.monotonic() + timeout
    while pending and time.monotonic() < deadline:
        for job_id, (via, name, began) in list(pending.items()):
            status, job = http("GET", f"{api}/jobs/{job_id}")
            if status == 200 and job["status"] in TERMINAL:
                rows.append(row_for(cloud, via, name, job, (time.perf_counter() - began) * 1000))
                del pending[job_id]
        time.sleep(0.05)
    for via, name, _began in pending.values():
        rows.append(Row(cloud, via, name, "TIMEOUT", f"not finished in {timeout:.0f} s", "?", timeout * 1000))
    return rows


def gcp(files: list[Path]) -> tuple[list[Row], str]:
    with GcpStack(bucket=f"demo-{uuid.uuid4().hex[:8]}") as stack, environment(stack.env()):
        if stack.note:
            print(f"note: {stack.note}")
        rows = push_samples("gcp", stack, files, bucket_events=stack.pubsub is not None)
        where = f"functions-framework API {stack.api_url}, fake-gcs-server {stack.gcs.url if stack.gcs else '-'}"
        where += f", Pub/Sub emulator {stack.pubsub.host}" if stack.pubsub else ", in-process processing"
    return rows, where


def azure(files: list[Path]) -> tuple[list[Row], str]:
    with AzureStack(container=f"demo-{uuid.uuid4().hex[:8]}") as stack, environment(stack.env()):
        rows = push_samples("azure", stack, files, bucket_events=True)
        assert stack.azurite is not None
        where = (
            f"devhost API {stack.api_url}, Azurite blob :{stack.azurite.blob_port}, queue :{stack.azurite.queue_port}"
        )
    return rows, where


def print_rows(cloud: str, where: str, rows: list[Row]) -> None:
    print(f"\n{cloud}: {where}")
    print(f"  {'via':<7} {'file':<18} {'type':<11} {'status':<8} {'ms':>7}  result or error")
    for row in sorted(rows, key=lambda r: r.name):
        mark = "" if row.as_expected else "   <-- unexpected"
        cells = f"{row.via:<7} {row.name:<18} {row.content_type:<11} {row.status:<8} {row.millis:7.1f}"
        print(f"  {cells}  {row.detail}{mark}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run the pipeline on local emulators, end to end.")
    parser.add_argument("--samples", type=Path, default=SAMPLES, help="folder of images (default: samples/)")
    args = parser.parse_args(argv)
    files = sample_files(args.samples)
    if not files:
        print(f"no images in {args.samples}", file=sys.stderr)
        return 2

    started = time.perf_counter()
    results: dict[str, list[Row]] = {}
    for name, run in (("gcp", gcp), ("azure", azure)):
        rows, where = run(files)
        print_rows(name, where, rows)
        results[name] = rows

    print("\nsummary")
    ok = True
    for cloud, rows in results.items():
        counts = {s: sum(r.status == s for r in rows) for s in ("DONE", "FAILED", "REFUSED")}
        good = all(r.as_expected for r in rows) and len(rows) == len(files)
        ok &= good
        verdict = "as expected" if good else "NOT as expected"
        refused = f", {counts['REFUSED']} REFUSED" if counts["REFUSED"] else ""
        print(f"  {cloud:<6} {len(rows)} jobs: {counts['DONE']} DONE, {counts['FAILED']} FAILED{refused} ({verdict})")
    print(f"  total  {time.perf_counter() - started:.1f} s; everything stopped")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
