"""Property-based fuzzing (hypothesis) of the parsers that face the outside: images and events.

Events: CloudEvents and Pub/Sub push payloads (GCP); on Azure, where the host itself parses
Event Grid and queue envelopes, what reaches our code: the blob name of an Event Grid
BlobCreated delivery, and queue message bodies.

A short run here (make test); a longer one: ``HYPOTHESIS_PROFILE=long make unit``.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import resource
import subprocess
import sys
from pathlib import Path

from azure.functions.queue import QueueMessage
from azure.storage.blob import BlobClient
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from core import formats
from core.errors import BadRequest, InvalidImage
from core.imaging import grayscale
from core.memory import InMemoryObjectStore, InMemoryTaskQueue
from core.pipeline import Services
from functions_azure import blueprint
from functions_azure import services as azure_services
from functions_gcp import events
from tests.helper import encode, hopper, noise

settings.register_profile("ci", max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("long", max_examples=20_000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

SEEDS = [encode(hopper(), fmt) for fmt in ("JPEG", "PNG", "GIF", "WEBP", "TIFF", "BMP")]


@given(st.binary(max_size=4096))
def test_grayscale_of_arbitrary_bytes_raises_only_invalid_image(data: bytes) -> None:
    with contextlib.suppress(InvalidImage):
        grayscale(data, max_pixels=4_000_000)


@given(st.sampled_from(SEEDS), st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), max_size=12),
       st.integers(0, 100))  # fmt: skip
def test_grayscale_of_mutated_images_raises_only_invalid_image(
    seed: bytes, flips: list[tuple[int, int]], cut: int
) -> None:
    data = bytearray(seed)
    for position, value in flips:
        data[position % len(data)] = value
    data = data[: max(1, len(data) - cut * len(data) // 100)]
    try:
        result = grayscale(bytes(data), max_pixels=4_000_000)
    except InvalidImage:
        return
    assert result.data and result.content_type.startswith("image/")


BMFF = [encode(hopper(), fmt) for fmt in ("HEIC", "AVIF")]
JXL = encode(hopper(), "JXL", lossless=True)


@given(st.sampled_from([*BMFF, JXL, b"\x00\x00\x00\x0cJXL \r\n\x87\n"]), st.binary(max_size=600), st.integers(0, 700))
def test_the_sniffers_never_raise_and_the_jxl_header_raises_only_invalid_image(
    seed: bytes, noise_bytes: bytes, keep: int
) -> None:
    data = seed[:keep] + noise_bytes  # the signature and the first boxes or bits kept, the rest arbitrary
    assert formats.sniff(data) in (None, "HEIF", "AVIF", "JXL")
    stated = formats.nclx(data)
    assert stated is None or len(stated) == 2
    with contextlib.suppress(InvalidImage):
        header = formats.jxl_header(data)
        assert header.width >= 1 and header.height >= 1


def test_the_native_decoders_survive_mutated_files_in_a_process_with_limits(tmp_path: Path) -> None:
    """A crash or a runaway allocation in libheif, libavif or libjxl fails here, naming the input, not pytest."""
    seeds = []
    for fmt, data in {"heic": encode(noise(), "HEIC"), "avif": encode(noise(), "AVIF"), "jxl": JXL}.items():
        seeds.append(tmp_path / f"seed.{fmt}")
        seeds[-1].write_bytes(data)
    last = tmp_path / "last-input"

    def limits() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))  # 2 GiB of address space
        resource.setrlimit(resource.RLIMIT_CPU, (120, 120))

    count = int(os.environ.get("NATIVE_FUZZ_COUNT", "150"))
    child = subprocess.run(
        [sys.executable, "-m", "tests.fuzz_native", *map(str, seeds), "--count", str(count), "--last", str(last)],
        capture_output=True, text=True, timeout=600, preexec_fn=limits, cwd=Path(__file__).parents[2],
    )  # fmt: skip
    crashed = f"exit {child.returncode}; the last input ({last}): {last.read_bytes()[:64]!r}...\n{child.stderr[-2000:]}"
    assert child.returncode == 0, crashed
    outcomes = json.loads(child.stdout.strip().splitlines()[-1])
    assert outcomes["rendered"] + outcomes["invalid"] == 3 * count
    assert outcomes["invalid"] > 0  # the mutations reached the decoders' error paths


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=20,
)


@given(st.sampled_from([events.FINALIZED, events.PUBLISHED, "x.y.z"]), json_values)
def test_storage_event_parser_raises_only_bad_request(event_type: str, data: object) -> None:
    with contextlib.suppress(BadRequest):
        events.storage_object(event_type, data)


@given(json_values, st.dictionaries(st.text(max_size=30), st.text(max_size=30), max_size=5))
def test_pubsub_message_parser_raises_only_bad_request(payload: object, attributes: dict[str, str]) -> None:
    message = {"message": {"data": base64.b64encode(json.dumps(payload).encode()).decode(), "attributes": attributes}}
    try:
        events.message_json(events.PUBLISHED, message)
        events.storage_object(events.PUBLISHED, message)
        events.delivery_attempts(message)
    except BadRequest:
        pass


@contextlib.contextmanager
def azure_functions_over_fakes():  # type: ignore[no-untyped-def]
    store, queue = InMemoryObjectStore(), InMemoryTaskQueue()
    azure_services.use(Services.over(store, queue))
    try:
        yield store, queue
    finally:
        azure_services.use(None)


@given(st.text(max_size=300), st.binary(max_size=64))
@example("c/uploads/a b#?.jpg", b"x")
@example("c/uploads/\x00", b"")
@example("c/uploads/", b"")
@example("c/uploads/../jobs/x.json", b"{}")
def test_event_grid_blob_names_never_crash_on_upload(name: str, body: bytes) -> None:
    with azure_functions_over_fakes() as (store, queue):
        key = name.split("/", 1)[1] if "/" in name else name
        with contextlib.suppress(BadRequest):  # a key no store accepts (empty, NUL) cannot have been uploaded
            store.put(key, body)
        if not key:
            return  # Event Grid names no blob without a name; the SDK binding cannot make its client
        blueprint.on_upload(BlobClient("http://127.0.0.1:1/devstoreaccount1", "c", key))
        # Only an upload becomes a job; nothing is written anywhere else.
        written = {info.key for info in store.list()} - {key}
        assert all(k.startswith("jobs/") for k in written)
        assert len(queue.messages) == (1 if written else 0)


@given(st.binary(max_size=200) | json_values.map(lambda v: json.dumps(v).encode()))
def test_queue_bodies_never_crash_process_job_or_on_poison(body: bytes) -> None:
    with azure_functions_over_fakes() as (store, _):
        message = QueueMessage(id="m", body=body, dequeue_count=1)
        blueprint.process_job(message)  # malformed or unknown: logged and dropped, never retried forever
        blueprint.on_poison(message)
        assert list(store.list()) == []
