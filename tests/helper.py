"""The test helpers, in one place: images in the manner of Pillow's Tests/helper.py, names and emulator
checks for the fixtures, the HTTP calls of the e2e tests, and a check of printed shell scripts."""

from __future__ import annotations

import base64
import concurrent.futures
import contextlib
import functools
import io
import json
import multiprocessing
import os
import struct
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NoReturn

import pytest
from PIL import ExifTags, Image, ImageChops, ImageCms, ImageOps, ImageStat

from core.memory import InMemoryObjectStore
from core.ports import ObjectInfo, StoredObject


@functools.cache
def _hopper() -> Image.Image:
    """A small, colourful, non-symmetric test picture (built, not committed)."""
    width, height = 64, 48
    im = Image.new("RGB", (width, height))
    im.putdata([((x * 4) % 256, (y * 5) % 256, ((x + y) * 3) % 256) for y in range(height) for x in range(width)])
    im.paste((255, 255, 255), (0, 0, 16, 12))  # a white block marks the top-left corner
    return im


def hopper(mode: str = "RGB") -> Image.Image:
    """A fresh copy of the test picture in ``mode``."""
    return _hopper().convert(mode) if mode != "RGB" else _hopper().copy()


def noise(size: tuple[int, int] = (128, 96), mode: str = "RGB") -> Image.Image:
    """Incompressible content, so that truncation always cuts pixel data."""
    bands = len(mode)
    data = bytes((i * 2654435761 >> 13) & 0xFF for i in range(size[0] * size[1] * bands))
    return Image.frombytes(mode, size, data)


def encode(im: Image.Image, fmt: str, **params: object) -> bytes:
    """``im`` saved as ``fmt`` by the real encoder: Pillow's, pillow-heif's for ``HEIC`` (tests only: GPL x265),
    libjxl's (pylibjxl) for ``JXL``."""
    if fmt == "HEIC":
        return encode_heic([im], **params)
    buf = io.BytesIO()
    if fmt == "JXL":
        import pylibjxl

        pylibjxl.register_pillow()
    im.save(buf, fmt, **params)
    return buf.getvalue()


def encode_heic(images: list[Image.Image], **params: object) -> bytes:
    """``images`` as one HEIF file by pillow-heif (the first is primary unless ``primary_index`` says otherwise).

    In a process of its own: pillow-heif's libheif and pi-heif-decoder's (which the code under test loads) crash
    the process they share (a segfault, seen here), so the encoder never meets the decoder."""
    frozen = [(im.mode, im.size, im.tobytes(), dict(im.info)) for im in images]
    return _heic_encoder().submit(_encode_heic, frozen, params).result(timeout=120)


@functools.cache
def _heic_encoder() -> concurrent.futures.ProcessPoolExecutor:
    return concurrent.futures.ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn"))


def _encode_heic(frozen: list[tuple[str, tuple[int, int], bytes, dict[str, Any]]], params: dict[str, Any]) -> bytes:
    import pillow_heif

    images = []
    for mode, size, raw, info in frozen:
        im = Image.frombytes(mode, size, raw)
        im.info.update(info)
        images.append(im)
    heif = pillow_heif.from_pillow(images[0])
    for im in images[1:]:
        heif.add_from_pillow(im)
    buf = io.BytesIO()
    heif.save(buf, **params)
    return buf.getvalue()


def decode(data: bytes) -> Image.Image:
    im = Image.open(io.BytesIO(data))
    im.load()
    return im


def upright(im: Image.Image, orientation: int) -> Image.Image:
    """``im`` as a viewer shows it when its EXIF orientation is ``orientation``."""
    copy = im.copy()
    exif = copy.getexif()
    exif[ExifTags.Base.Orientation] = orientation
    copy.info["exif"] = exif.tobytes()
    return ImageOps.exif_transpose(copy)


def srgb_luma(im: Image.Image, profile: bytes) -> Image.Image:
    """The luma of ``im``'s pixels read in ``profile`` and converted to sRGB by LittleCMS (``L``, or ``LA``)."""
    source = ImageCms.ImageCmsProfile(io.BytesIO(profile))
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB"))
    converted = ImageCms.profileToProfile(im.convert("RGB"), source, srgb, renderingIntent=ImageCms.Intent.PERCEPTUAL)
    assert converted is not None
    gray = converted.convert("L")
    if "A" in im.mode:
        gray.putalpha(im.getchannel("A"))
    return gray


def display_p3() -> bytes:
    from core import icc

    return icc.profile(icc.PRIMARIES[12], 13, "Display P3")


class _BitWriter:
    def __init__(self) -> None:
        self.bits: list[int] = []

    def u(self, n: int, value: int) -> _BitWriter:
        self.bits += [(value >> i) & 1 for i in range(n)]
        return self

    def data(self) -> bytes:
        padded = self.bits + [0] * (-len(self.bits) % 8)
        return bytes(sum(padded[i + j] << j for j in range(8)) for i in range(0, len(padded), 8))


def jxl_codestream(width: int, height: int, *, animated: bool = False, orientation: int = 1) -> bytes:
    """A codestream's size header and metadata, written bit by bit as ISO/IEC 18181-1 lays them out."""
    bits = _BitWriter().u(1, 0)  # not div8
    bits.u(2, 3).u(30, height - 1)  # U32 selector 3: 1 + u(30)
    bits.u(3, 0).u(2, 3).u(30, width - 1)  # no ratio; width likewise
    bits.u(1, 0).u(1, 1).u(3, orientation - 1)  # metadata not all default; extra fields; orientation
    bits.u(1, 0).u(1, 0).u(1, int(animated))  # no intrinsic size, no preview, animation
    return b"\xff\x0a" + bits.data() + b"\0" * 64


PHONE_FORMATS = ("HEIC", "AVIF", "AVIF-animated", "JXL")


@functools.cache  # the same bytes each time: an animated AVIF's encoding is not deterministic
def phone_photo(fmt: str, seed: int = 0) -> tuple[bytes, Image.Image, str]:
    """A photo as phones and browsers make them, in one of ``PHONE_FORMATS``: turned by orientation 6, in Display P3,
    with alpha (HEIC, AVIF); its expected grayscale from the pixels (first frame); the result's format.

    ``AVIF-animated`` has two frames and no orientation: Pillow's encoder segfaults on EXIF with ``save_all``.
    The JPEG XL one is a recompressed JPEG, which is how its codestream gets an orientation."""
    profile = display_p3()
    source = hopper("RGBA").rotate(seed)
    source.putalpha(Image.linear_gradient("L").resize(source.size))
    exif = Image.Exif()
    exif[ExifTags.Base.Orientation] = 6
    if fmt == "HEIC":
        data = encode(source, "HEIC", quality=-1, chroma=444, matrix_coefficients=0, exif=exif.tobytes(),
                      icc_profile=profile)  # fmt: skip
        return data, upright(srgb_luma(source, profile), 6), "png"
    if fmt == "AVIF":
        data = encode(source, "AVIF", quality=100, subsampling="4:4:4", exif=exif.tobytes(), icc_profile=profile)
        return data, upright(srgb_luma(source, profile), 6), "avif"
    if fmt == "AVIF-animated":
        second = source.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        data = encode(source, "AVIF", quality=100, subsampling="4:4:4", icc_profile=profile, save_all=True,
                      append_images=[second], duration=[120, 240])  # fmt: skip
        return data, srgb_luma(source, profile), "avif"
    import pylibjxl

    opaque = source.convert("RGB")
    jpeg = encode(opaque, "JPEG", quality=100, subsampling=0, exif=exif.tobytes(), icc_profile=profile)
    return bytes(pylibjxl.jpeg_to_jxl(jpeg)), upright(srgb_luma(opaque, profile), 6), "jpeg"


@functools.cache
def tiny_animation(frames: int) -> bytes:
    """A GIF of ``frames`` 1x1 frames, each unlike the one before (about 37 bytes a frame)."""
    images = [Image.new("L", (1, 1), 255 * (i % 2)) for i in range(frames)]
    return encode(images[0], "GIF", save_all=True, append_images=images[1:], duration=10, disposal=0)


def mean_abs_diff(a: Image.Image, b: Image.Image) -> float:
    assert a.size == b.size, f"sizes differ: {a.size} != {b.size}"
    diff = ImageChops.difference(a.convert("L"), b.convert("L"))
    return float(ImageStat.Stat(diff).mean[0])


def assert_image_similar(a: Image.Image, b: Image.Image, epsilon: float) -> None:
    """Mean absolute difference of the luma planes is at most ``epsilon``."""
    diff = mean_abs_diff(a, b)
    assert diff <= epsilon, f"images differ by {diff:.2f} > {epsilon}"


def png_bytes(width: int, height: int, bit_depth: int, color_type: int, raw_rows: bytes | None = None) -> bytes:
    """A PNG written by hand: for 16-bit colour, and for headers that lie about their size."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, 0)
    idat = zlib.compress(raw_rows if raw_rows is not None else b"\0" * 64)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


GCP_IDS = [
    "--gcp-project-number", "123456789012",
    "--gcp-wif-provider", "projects/123456789012/locations/global/workloadIdentityPools/gray-azure/providers/azure",
    "--gcp-reader-sa", "gray-reader@proj-1.iam.gserviceaccount.com",
    "--gcp-runtime-sa-id", "1098765432101234",
]  # fmt: skip
"""What deploy/gcp.py prints for deploy/azure.py, as its arguments (placeholders)."""


def deploy_dry_run(script: str, *args: str) -> list[str]:
    """The commands ``deploy/<script> ... --dry-run`` prints, a line each."""
    root = Path(__file__).resolve().parents[1]
    out = subprocess.run(
        [sys.executable, f"deploy/{script}", *args, "--dry-run"], cwd=root, capture_output=True, text=True, check=True
    ).stdout
    return out.splitlines()


def assert_valid_bash_in_order(lines: list[str], steps: list[str]) -> None:
    """The printed commands parse as bash, and the first line holding each step comes in this order."""
    subprocess.run(["bash", "-n"], input="\n".join(lines), text=True, check=True)
    positions = [next(i for i, line in enumerate(lines) if step in line) for step in steps]
    assert positions == sorted(positions)


class FailingReads(InMemoryObjectStore):
    """An in-memory store whose reads raise ``error``: every one, or only the first ``times``."""

    def __init__(self, error: Exception, *, times: int | None = None) -> None:
        super().__init__()
        self.error, self.times = error, times

    def get(self, key: str, *, max_bytes: int | None = None) -> StoredObject:
        if self.times is None:
            raise self.error
        if self.times > 0:
            self.times -= 1
            raise self.error
        return super().get(key, max_bytes=max_bytes)


# Names, emulators and HTTP, for the fixtures and the e2e tests ------------------------------------

EMULATORS: dict[str, str] = {}
"""What the session started (or found absent), for the summary that .ci/run shows."""


def unique_name(prefix: str = "t") -> str:
    """A fresh bucket, container or topic name, valid on GCS and Azure."""
    return f"{prefix}-{uuid.uuid4().hex[:16]}"


def absent(component: str, reason: str) -> NoReturn:
    """A part the suite needs is not on this machine: a skip that says why, but a failure naming it under
    ``CI=true``, where ``.ci/run`` installs every part and a skip would only hide a broken install."""
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"{component} is absent, and CI=true needs every part: {reason}", pytrace=False)
    pytest.skip(f"{component} absent: {reason}")


def require_pubsub_emulator(what: str = "this test") -> None:
    """Skip, saying why, where Google's Pub/Sub emulator is not installed (and say so in the summary)."""
    from devstack.emulators import EmulatorUnavailable, pubsub_emulator_binary

    try:
        pubsub_emulator_binary()
    except EmulatorUnavailable as exc:
        EMULATORS["pubsub-emulator"] = f"ABSENT, its tests skipped (failed under CI=true): {exc}"
        absent("Google's Pub/Sub emulator", f"{what} needs it: {exc}")


def http_json(
    method: str, url: str, body: bytes | None = None, headers: dict[str, str] | None = None
) -> tuple[int, Any]:
    """The status and the JSON body of one request (an HTTP error is an answer, not an exception)."""
    request = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read() or b"null")


def wait_for_job(api: str, job_id: str, *, until: tuple[str, ...] = ("DONE", "FAILED"), timeout: float = 30) -> Any:
    """Poll the API until the job reaches one of ``until``; fail with the last record otherwise."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        status, last = http_json("GET", f"{api}/jobs/{job_id}")
        if status == 200 and last["status"] in until:
            return last
        time.sleep(0.1)
    pytest.fail(f"job {job_id} did not reach {until} in {timeout}s; last: {last}")


def upload_event(stack: Any, key: str, info: ObjectInfo) -> None:
    """One more storage event for ``key`` on a local stack, as the platform would deliver it again:
    the bucket notification on GCP, Event Grid's BlobCreated at the devhost's blobs webhook on Azure."""
    from core.clouds import pubsub
    from devstack.gcp import NOTIFICATIONS_TOPIC, GcpStack

    if isinstance(stack, GcpStack):
        resource = {
            "bucket": stack.bucket,
            "name": key,
            "md5Hash": base64.b64encode(bytes.fromhex(info.md5 or "")).decode(),
        }
        attributes = {"eventType": "OBJECT_FINALIZE", "bucketId": stack.bucket, "objectId": key}
        pubsub.publish_raw(NOTIFICATIONS_TOPIC, json.dumps(resource).encode(), attributes)
        return
    assert stack.devhost is not None
    event = [{
        "id": f"again-{time.monotonic_ns()}", "eventType": "Microsoft.Storage.BlobCreated",
        "eventTime": "2026-11-27T00:00:00Z", "dataVersion": "", "metadataVersion": "1",
        "subject": f"/blobServices/default/containers/{stack.container}/blobs/{key}",
        "data": {"api": "PutBlob", "blobType": "BlockBlob"},
    }]  # fmt: skip
    webhook = f"http://127.0.0.1:{stack.devhost.port}/runtime/webhooks/blobs?functionName=Host.Functions.on_upload"
    status, _ = http_json("POST", webhook, json.dumps(event).encode(), {"aeg-event-type": "Notification"})
    assert status == 200


def renders(stack: Any) -> dict[str, int]:
    """How many times the stack's hosts rendered each job, from their own log lines (``rendered ... into ...``):
    a second render of one job, which the result key (overwritten) and the record (one) cannot show."""
    from collections import Counter

    functions = getattr(stack, "functions", None)
    logs = [host.log for host in functions.values()] if functions else [stack.devhost.log]
    found: Counter[str] = Counter()
    for path in logs:
        for line in Path(path).read_text(errors="replace").splitlines():
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if isinstance(entry, dict) and str(entry.get("message", "")).startswith("rendered "):
                found[str(entry.get("job_id"))] += 1
    return dict(found)


@contextlib.contextmanager
def replicating_barriers(
    bucket: Any, source: Any, dest: Any, records: Any, run: Any = None, on_barrier: Any = None
) -> Iterator[None]:
    """The replicate function for barriers (the go-live probe, the drain's), from a thread: each barrier written
    into ``bucket`` is replicated into ``run`` (by default the live run ``_cutover/live.json`` names, once there is
    one), after ``on_barrier()``."""
    import threading

    from migrate import live

    stop = threading.Event()

    def work() -> None:
        while not stop.wait(0.01):
            running = run or live.live_run(bucket)
            for barrier in list(bucket.list(live.BARRIER_PREFIX)) if running else []:
                if on_barrier is not None:
                    on_barrier()
                live.replicate(live.Change(barrier.key), bucket, source, dest, records, running)

    worker = threading.Thread(target=work, daemon=True)
    worker.start()
    try:
        yield
    finally:
        stop.set()
        worker.join()
