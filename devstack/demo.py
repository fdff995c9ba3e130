"""``make demo``: the whole story on real emulators and local function hosts.

1. GCP (fake-gcs-server, the Pub/Sub emulator, functions-framework) processes
   the sample images: half written straight to the bucket, half POSTed to the API
   (without the Pub/Sub emulator, all through the API, processed in-process).
2. ``python -m migrate plan --live`` moves the bucket to Azurite through the
   Azure fan-out function ``migrate_batch`` (run by the devhost), and turns on
   live replication (GCP's ``migrate_replicate``); Azure is a replica. The demo
   follows the run at ``GET /migrations/{run_id}``.
3. ``python -m migrate verify``.
4. Live sync: a new upload to the bucket is processed on GCP and reaches Azure
   (upload, job record, result) within seconds.
5. ``python -m migrate cutover``: freeze, drain, verify what changed, switch,
   in seconds (``frozen_seconds`` in the summary). GCP's API then answers 503.
6. Azure serves every job made on GCP, with its result, without processing
   any migrated upload again; it processes an upload written to the frozen
   bucket after the freeze (replicated to it) and a new one through its API.
7. ``python -m migrate rollback``: Azure is held, what it made is copied back,
   GCP serves those jobs and takes uploads again; Azure is a replica again.
8. Decommission: both deploy scripts' ``--teardown --dry-run``.

It prints the jobs, a summary table, stops everything it started, and exits 0
only when every step worked. ``truncated.jpg`` must end FAILED with a reason.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import mimetypes
import signal
import subprocess
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
from devstack.stacks import both_clouds

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
    job_id: str | None = None

    @property
    def as_expected(self) -> bool:
        if self.name in EXPECTED_FAILURES:
            return self.status in ("FAILED", "REFUSED") and bool(self.detail)
        return self.status == "DONE"


def sample_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)


def row_for(cloud: str, via: str, name: str, job: dict[str, Any], millis: float) -> Row:
    detail = job.get("result") if job["status"] == "DONE" else job.get("error")
    return Row(cloud, via, name, job["status"], detail or "", job.get("content_type") or "?", millis, job["id"])


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


def print_rows(cloud: str, where: str, rows: list[Row]) -> None:
    print(f"\n{cloud}: {where}")
    print(f"  {'via':<7} {'file':<18} {'type':<11} {'status':<8} {'ms':>7}  result or error")
    for row in sorted(rows, key=lambda r: r.name):
        mark = "" if row.as_expected else "   <-- unexpected"
        cells = f"{row.via:<7} {row.name:<18} {row.content_type:<11} {row.status:<8} {row.millis:7.1f}"
        print(f"  {cells}  {row.detail}{mark}")


@dataclass
class Step:
    name: str
    result: str
    seconds: float
    ok: bool


def cli(*args: str) -> tuple[int, Any]:
    """Run ``python -m migrate ...`` as a user does; its exit code and the JSON of its last line."""
    run = subprocess.run([sys.executable, "-m", "migrate", *args, "--json"], cwd=ROOT, capture_output=True, text=True)
    lines = run.stdout.strip().splitlines()
    try:
        return run.returncode, json.loads(lines[-1]) if lines else {}
    except ValueError:
        return run.returncode, {"output": run.stdout[-500:], "error": run.stderr[-500:]}


def story(files: list[Path]) -> tuple[list[Step], dict[str, int]]:
    """The whole story: GCP, the migration, the cutover drill, Azure."""
    steps: list[Step] = []
    with contextlib.ExitStack() as stack:
        suffix = uuid.uuid4().hex[:8]
        gcp, azure = both_clouds(stack, bucket=f"demo-{suffix}", container=f"demo-{suffix}")
        stack.enter_context(environment({**gcp.env(), **azure.env()}))
        if gcp.note:
            print(f"note: {gcp.note}")
        bucket, container = gcp.bucket, azure.container

        began = time.perf_counter()
        rows = push_samples("gcp", gcp, files, bucket_events=gcp.pubsub is not None)
        where = f"functions-framework {gcp.api_url}" + (f", Pub/Sub {gcp.pubsub.host}" if gcp.pubsub else "")
        print_rows("1. GCP", where, rows)
        good = all(r.as_expected for r in rows) and len(rows) == len(files)
        done = sum(r.status == "DONE" for r in rows)
        steps.append(Step("GCP processes the samples", f"{len(rows)} jobs, {done} DONE", _since(began), good))
        gcp_jobs = {r.job_id: r for r in rows if r.job_id}

        began = time.perf_counter()
        live = gcp.pubsub is not None  # replication rides on the bucket's notifications
        code, planned = cli("plan", f"gs://{bucket}", f"az://{container}", "--batch-size", "4", *(["--live"] * live))
        state: dict[str, Any] = {}
        if code == 0:
            state = wait_migration(azure.api_url, planned["run_id"], container)
        ok = code == 0 and state.get("state") == "done"
        result = f"{state.get('copied', 0)} objects in {planned.get('batches', '?')} batches by migrate_batch"
        result += "; Azure a replica" if live else ""
        steps.append(Step("migrate plan" + " --live" * live + " + Azure fan-out", result, _since(began), ok))

        began = time.perf_counter()
        code, found = cli("verify", f"gs://{bucket}", f"az://{container}")
        steps.append(Step("migrate verify", _diff(found), _since(began), code == 0))

        late = (SAMPLES / "sunset.jpg").read_bytes() if (SAMPLES / "sunset.jpg").exists() else files[0].read_bytes()
        if live:
            began = time.perf_counter()
            key = "uploads/while-live.jpg"
            gcp.store().put(key, late, content_type="image/jpeg")
            job_id = job_id_for(key, hashlib.md5(late).hexdigest())
            done = wait_all("gcp", gcp.api_url, {job_id: ("bucket", "while-live.jpg", began)})
            on_azure = _wait_served(azure.api_url, job_id, done[0].status if done else "")
            ok = bool(done) and done[0].status == "DONE" and on_azure is not None
            result = f"GCP {done[0].status if done else '?'}; on Azure, with its result, after {on_azure or 0:.1f} s"
            steps.append(Step("live sync: an upload during the migration", result, _since(began), ok))
            gcp_jobs[job_id] = done[0]

        late_id = ""
        if live:
            began = time.perf_counter()
            code, cut = cli("cutover", f"gs://{bucket}", f"az://{container}")
            frozen = cut.get("frozen_seconds")
            result = (f"frozen {frozen:.2f} s (drained in {cut.get('drain_seconds', 0):.2f} s); "
                      f"{cut.get('verify', {}).get('same', '?')} replicated objects verified"
                      if frozen is not None else str(cut.get("error") or cut))  # fmt: skip
            steps.append(Step("cutover: freeze, drain, verify, switch", result, _since(began),
                              code == 0 and bool(cut.get("switch"))))  # fmt: skip

            began = time.perf_counter()
            status, refused = http("POST", f"{gcp.api_url}/jobs", files[0].read_bytes())
            late_key = "uploads/after-the-freeze.jpg"
            gcp.store().put(late_key, late, content_type="image/jpeg")  # written to the frozen bucket: Azure's
            late_id = job_id_for(late_key, hashlib.md5(late).hexdigest())
            time.sleep(1.5)
            left = http("GET", f"{gcp.api_url}/jobs/{late_id}")[0] == 404
            ok = status == 503 and refused.get("error") == "frozen" and left
            steps.append(Step("after the switch: GCP frozen", f"GCP POST {status} {refused.get('error')}; "
                              "a bucket upload is Azure's", _since(began), ok))  # fmt: skip
        else:
            print("note: the cutover needs live sync, which needs the Pub/Sub emulator: not run")

        began = time.perf_counter()
        served = results = 0
        for job_id in gcp_jobs:
            _, on_gcp = http("GET", f"{gcp.api_url}/jobs/{job_id}")
            status, on_azure = http("GET", f"{azure.api_url}/jobs/{job_id}")
            if status == 200 and on_azure == on_gcp:  # the same record: nothing was processed again
                served += 1
                if on_azure["status"] == "DONE" and _status(f"{azure.api_url}/jobs/{job_id}/result") == 200:
                    results += 1
        expected_results = sum(r.status == "DONE" for r in gcp_jobs.values())
        ok = served == len(gcp_jobs) and results == expected_results
        result = f"{served}/{len(gcp_jobs)} records, {results} results"
        steps.append(Step("Azure serves the GCP jobs, unchanged", result, _since(began), ok))

        began = time.perf_counter()
        late_job = (
            wait_all("azure", azure.api_url, {late_id: ("bucket", "after-the-freeze.jpg", began)}) if live else []
        )
        # A file GCP took through the bucket: through Azure's API it is a new upload, with a new job.
        new_file = files[0]
        status, new = http("POST", f"{azure.api_url}/jobs", new_file.read_bytes())
        fresh = wait_all("azure", azure.api_url, {new["id"]: ("http", new_file.name, began)}) if status == 202 else []
        azure_rows = late_job + fresh
        print_rows("Azure after the cutover", f"devhost {azure.api_url}", azure_rows)
        ok = len(azure_rows) == 1 + live and all(r.status in ("DONE", "FAILED") and r.as_expected for r in azure_rows)
        steps.append(Step("Azure: the upload left for it and a new one", ", ".join(r.status for r in azure_rows),
                          _since(began), ok))  # fmt: skip
        jobs = {"gcp": len(gcp_jobs), "azure": len(gcp_jobs) + len(azure_rows)}

        if live:
            began = time.perf_counter()
            code, back = cli("rollback", f"gs://{bucket}", f"az://{container}")
            served = [r for r in azure_rows if _wait_served(gcp.api_url, r.job_id or "", r.status) is not None]
            status, _ = http("POST", f"{gcp.api_url}/jobs", files[0].read_bytes())
            ok = code == 0 and bool(back.get("rolled_back")) and len(served) == len(azure_rows) and status == 202
            result = (f"{back.get('copied_back')} copied back, held {back.get('frozen_seconds', 0):.2f} s; "
                      f"GCP serves Azure's {len(served)} jobs, POST {status}"
                      if back.get("rolled_back") else str(back.get("error") or back))  # fmt: skip
            steps.append(Step("rollback: hold Azure, copy back, GCP again", result, _since(began), ok))
            jobs["gcp"] += len(served) + (status == 202)

        began = time.perf_counter()
        gcp_teardown = _script("deploy/gcp.py", "--project", "demo-project", "--bucket", bucket)
        azure_teardown = _script("deploy/azure.py", "--resource-group", "demo-rg", "--storage-account", "demostore",
                                 "--app", "demo-app")  # fmt: skip
        ok = gcp_teardown > 0 and azure_teardown > 0
        steps.append(Step("decommission (teardown --dry-run)", f"gcloud: {gcp_teardown} commands, az: {azure_teardown}",
                          _since(began), ok))  # fmt: skip
    return steps, jobs


def _wait_served(api: str, job_id: str, status: str, timeout: float = 30) -> float | None:
    """Seconds until the Azure API serves the job with ``status`` and its result (replicated), or None."""
    began = time.monotonic()
    while time.monotonic() - began < timeout:
        code, job = http("GET", f"{api}/jobs/{job_id}")
        if code == 200 and job.get("status") == status and _status(f"{api}/jobs/{job_id}/result") == 200:
            return time.monotonic() - began
        time.sleep(0.1)
    return None


def _script(path: str, *args: str) -> int:
    """Run a deploy script's teardown as a dry run; the number of commands it would run (0 if it failed)."""
    run = subprocess.run(
        [sys.executable, path, *args, "--teardown", "--dry-run"], cwd=ROOT, capture_output=True, text=True
    )
    return len(run.stdout.splitlines()) - 1 if run.returncode == 0 else 0


def wait_migration(api: str, run_id: str, container: str, timeout: float = 120) -> dict[str, Any]:
    deadline, found = time.monotonic() + timeout, {}
    while time.monotonic() < deadline:
        _, found = http("GET", f"{api}/migrations/{run_id}?container={urllib.parse.quote(container)}")
        if found.get("state") in ("done", "failed"):
            break
        time.sleep(0.3)
    return dict(found)


def _status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            return int(response.status)
    except urllib.error.HTTPError as err:
        return err.code


def _diff(found: dict[str, Any]) -> str:
    keys = ("same", "missing", "extra", "different")
    return ", ".join(f"{found.get(k, '?')} {k}" for k in keys)


def _since(began: float) -> float:
    return time.perf_counter() - began


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="The whole story on local emulators: GCP, migration, Azure.")
    parser.add_argument("--samples", type=Path, default=SAMPLES, help="folder of images (default: samples/)")
    args = parser.parse_args(argv)
    files = sample_files(args.samples)
    if not files:
        print(f"no images in {args.samples}", file=sys.stderr)
        return 2
    for stop in (signal.SIGTERM, signal.SIGHUP):  # as Ctrl-C: the stacks unwind and stop what they started
        signal.signal(stop, signal.default_int_handler)
    started = time.perf_counter()
    try:
        steps, jobs = story(files)
    except KeyboardInterrupt:
        print("interrupted; everything stopped", file=sys.stderr)
        return 130
    print("\nsummary")
    print(f"  {'step':<43} {'result':<68} {'s':>6}  ok")
    for step in steps:
        print(f"  {step.name:<43} {step.result:<68} {step.seconds:6.1f}  {'yes' if step.ok else 'NO'}")
    print(
        f"  jobs per cloud: gcp {jobs['gcp']}, azure {jobs['azure']} (GCP's migrated, 2 made on Azure, "
        "copied back by the rollback with 1 new on GCP)"
    )
    ok = all(step.ok for step in steps)
    verdict = "all as expected" if ok else "NOT as expected"
    print(f"  total {time.perf_counter() - started:.1f} s; everything stopped; {verdict}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
