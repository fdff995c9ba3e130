"""Smoke check of a deployment: one image through the API (as the page sends it), one straight into storage.

    python deploy/gcp.py   --check --api URL [--stack FILE]      # bucket: $GCS_BUCKET, or the stack file's
    python deploy/azure.py --check --api URL [--function-key KEY] [--stack FILE]
    make smoke                                                   # both, against .dev/stack.json (make dev)

For each path it waits for DONE, fetches the result and prints the timings.
Exit 0 only if all of that worked; 1 if a step failed; 2 if it cannot start
(no API URL, no bucket or container, no sample image).

- The page: ``GET {api}/`` answers HTML that knows the function key (``#code=``).
- The API: ``POST {api}/jobs`` with the sample as the multipart field ``file``, as
  the page sends it; on Azure with ``x-functions-key`` (``--function-key`` or
  ``$AZURE_FUNCTION_KEY``); on GCP with ``Authorization: Bearer $GCP_IDENTITY_TOKEN``
  when set (``gcloud auth print-identity-token``), since the API is IAM-private.
- Storage: ``uploads/smoke-<uuid>.jpg`` written with the platform credentials
  (``STORAGE_EMULATOR_HOST`` / ADC; ``AZURE_STORAGE_CONNECTION_STRING`` /
  ``AZURE_STORAGE_ACCOUNT_URL``); its job id is derived as the pipeline derives it.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from core.jobs import job_id_for  # noqa: E402

SAMPLE = ROOT / "samples" / "sunset.jpg"
DEFAULT_STACK = ROOT / ".dev" / "stack.json"
TIMEOUT = float(os.environ.get("SMOKE_TIMEOUT_SECONDS", "120"))


class SmokeFailed(Exception):
    """One step of the smoke check did not work; the message says which and why."""


def http(method: str, url: str, body: bytes | None = None, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()
    except (urllib.error.URLError, OSError) as exc:
        raise SmokeFailed(f"{method} {url}: cannot reach it ({exc})") from exc


def multipart(name: str, data: bytes) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{name}"\r\n'
            f"Content-Type: image/jpeg\r\n\r\n"
        ).encode()
        + data
        + f"\r\n--{boundary}--\r\n".encode()
    )
    return body, f"multipart/form-data; boundary={boundary}"


def wait_done(api: str, job_id: str, headers: dict[str, str]) -> dict[str, Any]:
    deadline = time.monotonic() + TIMEOUT
    last: Any = None
    while time.monotonic() < deadline:
        status, body = http("GET", f"{api}/jobs/{job_id}", headers=headers)
        if status == 200:
            last = json.loads(body)
            if last["status"] == "DONE":
                return dict(last)
            if last["status"] == "FAILED":
                raise SmokeFailed(f"job {job_id} FAILED: {last.get('error')}")
        elif status != 404:  # 404: the upload event has not made the job yet
            raise SmokeFailed(f"GET /jobs/{job_id} answered {status}: {body[:200]!r}")
        time.sleep(0.2)
    raise SmokeFailed(f"job {job_id} not DONE after {TIMEOUT:.0f} s; last: {last}")


def fetch_result(api: str, job_id: str, headers: dict[str, str]) -> int:
    status, body = http("GET", f"{api}/jobs/{job_id}/result", headers=headers)
    if status != 200 or not body:
        raise SmokeFailed(f"GET /jobs/{job_id}/result answered {status}")
    return len(body)


def check_page(api: str, headers: dict[str, str]) -> None:
    status, body = http("GET", f"{api}/", headers=headers)
    if status != 200 or b"<html" not in body.lower():
        raise SmokeFailed(f"GET {api}/ answered {status}, not the upload page")
    if b"x-functions-key" not in body:
        raise SmokeFailed("the page does not send the function key from #code=: an old deployment?")


def upload_via_api(api: str, data: bytes, headers: dict[str, str]) -> str:
    # A fresh name: the same name and bytes would find the job of an earlier run, already DONE.
    body, content_type = multipart(f"smoke-{uuid.uuid4().hex[:12]}.jpg", data)
    status, answer = http("POST", f"{api}/jobs", body, {**headers, "Content-Type": content_type})
    if status in (401, 403):
        raise SmokeFailed(f"POST /jobs answered {status}: the key or identity token is missing or refused")
    if status != 202:
        raise SmokeFailed(f"POST /jobs answered {status}: {answer[:300]!r}")
    return str(json.loads(answer)["id"])


def upload_to_storage(cloud: str, where: str, data: bytes) -> str:
    """Write ``uploads/smoke-<uuid>.jpg`` straight into the bucket or container; return its job id."""
    key = f"uploads/smoke-{uuid.uuid4().hex[:12]}.jpg"
    if cloud == "gcp":
        from core.clouds.gcs import GcsObjectStore

        GcsObjectStore(where).put(key, data, content_type="image/jpeg")
    else:
        from core.clouds.azure_blob import AzureBlobObjectStore

        AzureBlobObjectStore(where).put(key, data, content_type="image/jpeg")
    return job_id_for(key, hashlib.md5(data).hexdigest())


def run(cloud: str, api: str, where: str, headers: dict[str, str], say: Callable[[str], None] = print) -> None:
    data = SAMPLE.read_bytes()
    started = time.monotonic()
    check_page(api, {})
    say(f"{cloud}: page            ok                  {time.monotonic() - started:6.2f} s")
    for path, submit in (
        ("API upload", lambda: upload_via_api(api, data, headers)),
        ("storage upload", lambda: upload_to_storage(cloud, where, data)),
    ):
        t0 = time.monotonic()
        job_id = submit()
        t1 = time.monotonic()
        wait_done(api, job_id, headers)
        t2 = time.monotonic()
        size = fetch_result(api, job_id, headers)
        t3 = time.monotonic()
        say(f"{cloud}: {path:<15} DONE {job_id[:12]}  upload {t1 - t0:5.2f} s, to DONE {t2 - t1:5.2f} s, "
            f"result {size:,} B in {t3 - t2:4.2f} s")  # fmt: skip


def load_stack(path: Path, *needed: str) -> dict[str, Any]:
    """The stack file of ``make dev``; ``SmokeFailed`` when it is missing, or when nothing listens at one of the
    ``needed`` URLs in it (its processes are gone)."""
    try:
        found = dict(json.loads(path.read_text()))
    except FileNotFoundError:
        raise SmokeFailed(f"no stack file at {path}: run `make dev`, or give --api") from None
    for key in needed:
        url = urllib.parse.urlsplit(str(found.get(key) or ""))
        if url.hostname and not _listens(url.hostname, url.port or 80):
            raise SmokeFailed(
                f"the stack of {path} is gone: nothing listens at {found[key]} ({key}); "
                "its `make dev` ended without removing the file. Start `make dev` again"
            )
    return found


def _listens(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=2):
            return True
    except OSError:
        return False


def main_for(cloud: str, *, api: str | None, stack: str | None, function_key: str | None = None) -> int:
    """The ``--check`` of ``deploy/gcp.py`` and ``deploy/azure.py``."""
    try:
        if api is None or stack:
            needed = ([] if api else [f"{cloud}_api"]) + (["gcs_endpoint"] if cloud == "gcp" else [])
            found = load_stack(Path(stack) if stack else DEFAULT_STACK, *needed)
            api = api or found[f"{cloud}_api"]
            if cloud == "gcp":
                os.environ["STORAGE_EMULATOR_HOST"] = found["gcs_endpoint"]
                os.environ.setdefault("GOOGLE_CLOUD_PROJECT", "local")
                os.environ["GCS_BUCKET"] = found["gcs_bucket"]
            else:
                os.environ["AZURE_STORAGE_CONNECTION_STRING"] = found["azure_connection_string"]
                os.environ["AZURE_STORAGE_CONTAINER"] = found["azure_container"]
        where = os.environ.get("GCS_BUCKET" if cloud == "gcp" else "AZURE_STORAGE_CONTAINER", "")
        if not where:
            variable = "GCS_BUCKET" if cloud == "gcp" else "AZURE_STORAGE_CONTAINER"
            raise SmokeFailed(f"say where to upload straight to storage: export {variable}=...")
    except SmokeFailed as exc:
        print(f"smoke {cloud}: cannot start: {exc}", file=sys.stderr)
        return 2
    headers: dict[str, str] = {}
    key = function_key or os.environ.get("AZURE_FUNCTION_KEY", "")
    if cloud == "azure" and key:
        headers["x-functions-key"] = key
    token = os.environ.get("GCP_IDENTITY_TOKEN", "")
    if cloud == "gcp" and token:
        headers["Authorization"] = f"Bearer {token}"
    assert api is not None
    try:
        run(cloud, api.rstrip("/"), where, headers)
    except Exception as exc:  # every failure is one line and exit 1, never a traceback
        print(f"smoke {cloud}: FAILED: {exc}", file=sys.stderr)
        return 1
    print(f"smoke {cloud}: all worked against {api}")
    return 0
