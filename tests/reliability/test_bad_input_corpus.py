"""A corpus of bad inputs, generated here, sent to both APIs and written straight to both stores.

Every input ends with a 4xx or a FAILED job with a reason: no crash, no result written,
and the peak memory of the processing hosts is reported.
"""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

import pytest
from PIL import Image

from core.jobs import job_id_for
from devstack.azure import AzureStack
from devstack.gcp import GcpStack
from tests.helper import encode, http_json, jxl_codestream, noise, png_bytes, tiny_animation, wait_for_job
from tests.unit.test_imaging import _samples

pytestmark = [pytest.mark.reliability, pytest.mark.emulator]


def corpus() -> dict[str, bytes]:
    bad: dict[str, bytes] = {}
    for kind, data in _samples().items():
        bad[f"truncated-{kind}"] = data[: len(data) // 2]
        flipped = bytearray(data)
        for position in range(len(flipped) // 3, len(flipped), max(1, len(flipped) // 40)):
            flipped[position] ^= 0xFF
        bad[f"corrupt-{kind}"] = bytes(flipped)
    bad["bomb.png"] = png_bytes(60_000, 60_000, 8, 2)
    bad["empty.jpg"] = b""
    bad["text-named.jpg"] = b"just some words, not a photo\n" * 10
    bad["html-as-image"] = b"<!doctype html><html><body><img src=x onerror=alert(1)></body></html>"
    exif = Image.Exif()
    exif[0x010E] = "x" * 60_000  # ImageDescription: a huge EXIF block
    bad["huge-exif.jpg"] = encode(noise(), "JPEG", exif=exif.tobytes())
    cmyk = Image.new("CMYK", (64, 48), (10, 200, 30, 5))
    bad["frames-3000.gif"] = tiny_animation(3_000)  # past the frame cap: bounded work, one attempt
    bad["cmyk-broken-icc.jpg"] = encode(cmyk, "JPEG", icc_profile=b"not an ICC profile at all" * 20)
    for fmt in ("HEIC", "AVIF", "JXL"):  # the native decoders: libheif/libde265, libavif/dav1d, libjxl
        data = encode(noise(), fmt)
        bad[f"truncated-{fmt.lower()}"] = data[: len(data) // 2]
        flipped = bytearray(data)
        for position in range(len(flipped) // 3, len(flipped), max(1, len(flipped) // 40)):
            flipped[position] ^= 0xFF
        bad[f"corrupt-{fmt.lower()}"] = bytes(flipped)
    heic = encode(noise(), "HEIC")
    bad["heic-branded-avif"] = heic[:8] + b"avif" + heic[12:].replace(b"heic", b"avif").replace(b"heix", b"avif")
    bad["animated.jxl"] = jxl_codestream(64, 48, animated=True)
    bad["bomb.jxl"] = jxl_codestream(100_000, 100_000)  # a header only: refused before any decoding
    return bad


def host_peak_kib(pids: list[int]) -> int:
    """The largest VmHWM among these processes and their children."""
    peak = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            status = (entry / "status").read_text()
            stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(entry.name) in pids or int(stat[1]) in pids or int(stat[2]) in pids:
            for line in status.splitlines():
                if line.startswith("VmHWM:"):
                    peak = max(peak, int(line.split()[1]))
    return peak


@pytest.mark.parametrize("cloud", ["gcp", "azure"])
def test_every_bad_input_ends_4xx_or_failed(request: pytest.FixtureRequest, cloud: str) -> None:
    stack: GcpStack | AzureStack = request.getfixturevalue(f"{cloud}_stack")
    bad = corpus()
    outcomes: dict[str, str] = {}
    waiting: dict[str, str] = {}
    for name, data in bad.items():
        status, body = http_json("POST", f"{stack.api_url}/jobs", data)
        if status == 202:
            waiting[f"api:{name}"] = body["id"]
        else:
            assert 400 <= status < 500, (name, status, body)
            assert set(body) >= {"error", "message"} and "Traceback" not in body["message"]
            outcomes[f"api:{name}"] = f"{status} {body['error']}"
        if data:  # the same bytes written straight to the store, as a user with bucket access would
            key = f"uploads/bad-{time.monotonic_ns()}-{name}"
            stack.store().put(key, data)
            waiting[f"store:{name}"] = job_id_for(key, hashlib.md5(data).hexdigest())
    jobs = {label: wait_for_job(stack.api_url, job_id, timeout=60) for label, job_id in waiting.items()}
    results = [info.key for info in stack.store().list("results/")]  # listed once every job has ended
    assert any(job["status"] == "DONE" for job in jobs.values()) and results, "the listing sees the DONE results"
    for label, job in jobs.items():
        # Still images, so DONE is right: a flipped byte in pixel data; a huge EXIF block (dropped from
        # the output); a broken ICC profile (the plain CMYK conversion is used instead).
        renderable = "corrupt" in label or "huge-exif" in label or "broken-icc" in label
        ok = (job["status"] == "FAILED" and job["error"]) or (job["status"] == "DONE" and renderable)
        assert ok, (label, job)
        if job["status"] == "FAILED":
            # Nothing written for it: no result in the record, no object under results/ for its upload.
            stem = "results/" + job["source"].removeprefix("uploads/")
            assert job["result"] is None, (label, job)
            assert [key for key in results if key.startswith(stem)] == [], (label, job)
        outcomes[label] = job["status"]
    if isinstance(stack, GcpStack):
        hosts = {name: host.proc for name, host in stack.functions.items()}
    else:
        hosts = {"devhost": stack.devhost.proc if stack.devhost else None}
    # Every host process is still the one the stack started, and still running: no input crashed one.
    dead = {name: proc.poll() if proc else "never started" for name, proc in hosts.items()}
    assert {name: code for name, code in dead.items() if code is not None} == {}
    peak = host_peak_kib([proc.pid for proc in hosts.values() if proc])
    rejected = sum(v[0] == "4" for v in outcomes.values())
    failed = sum(v == "FAILED" for v in outcomes.values())
    survived = sum(v == "DONE" for v in outcomes.values())
    assert rejected + failed + survived == len(outcomes) == len(waiting) + rejected
    # Every truncated input fails on both paths: refused by the API's probe or FAILED by the worker.
    truncated = [label for label in outcomes if label.split(":", 1)[1].startswith("truncated")]
    assert truncated and all(outcomes[label] == "FAILED" or outcomes[label][0] == "4" for label in truncated)
    print(f"\nFIGURE bad input {cloud}: {len(bad)} inputs, {len(outcomes)} deliveries (API + store): "
          f"{rejected} refused 4xx, {failed} FAILED with a reason, {survived} still renderable (DONE), "
          f"{len(hosts)} host processes all alive; peak RSS of the hosts {peak / 1024:.0f} MiB")  # fmt: skip
