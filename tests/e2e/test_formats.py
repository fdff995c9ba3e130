"""HEIC, AVIF and JPEG XL photos through both local stacks, both ways in (the bucket or container, and the API).

Each photo is turned by its orientation, in Display P3, with alpha and frames where the format has them
(``tests.helper.phone_photo``); its expected grayscale is computed from its pixels, not by the hosts' decoders.
"""

from __future__ import annotations

import hashlib
import urllib.request

import pytest

from core.jobs import job_id_for
from devstack.azure import AzureStack
from devstack.gcp import GcpStack
from tests.helper import PHONE_FORMATS, decode, http_json, jxl_codestream, mean_abs_diff, phone_photo, wait_for_job

pytestmark = [pytest.mark.e2e, pytest.mark.emulator]
STACKS = [pytest.param("gcp_stack", marks=pytest.mark.pubsub), "azure_stack"]
NAMES = {"HEIC": "heic", "AVIF": "avif", "AVIF-animated": "avif", "JXL": "jxl"}
TYPES = {"heic": "image/heic", "avif": "image/avif", "jxl": "image/jxl"}
EXTENSIONS = {"png": ".png", "jpeg": ".jpg", "avif": ".avif"}


@pytest.fixture(params=STACKS)
def stack(request: pytest.FixtureRequest) -> GcpStack | AzureStack:
    return request.getfixturevalue(request.param)  # type: ignore[no-any-return]


def fetch(url: str) -> tuple[str, bytes]:
    with urllib.request.urlopen(url, timeout=30) as response:
        return response.headers["Content-Type"], response.read()


@pytest.mark.parametrize("way", ["store", "api"])
@pytest.mark.parametrize("fmt", PHONE_FORMATS)
def test_a_phone_photo_comes_out_right(stack: GcpStack | AzureStack, fmt: str, way: str) -> None:
    seed = PHONE_FORMATS.index(fmt) * 4 + (2 if way == "api" else 1) + (40 if isinstance(stack, AzureStack) else 0)
    data, expected, output = phone_photo(fmt, seed)
    name = NAMES[fmt]
    if way == "store":
        key = f"uploads/phone {fmt} {seed}.{name}"
        # A type that says nothing: the format is sniffed from the bytes.
        stack.store().put(key, data, content_type="application/octet-stream")
        job_id = job_id_for(key, hashlib.md5(data).hexdigest())
    else:
        status, body = http_json("POST", f"{stack.api_url}/jobs", data, {"Content-Type": TYPES[name]})
        assert status == 202, body
        assert body["input_format"] == name  # known from the API's probe, before processing
        job_id = body["id"]
    job = wait_for_job(stack.api_url, job_id, timeout=60)
    assert job["status"] == "DONE", job
    assert (job["input_format"], job["output_format"], job["content_type"]) == (name, output, TYPES[name])
    assert job["result"].endswith(EXTENSIONS[output])
    content_type, body_bytes = fetch(f"{stack.api_url}/jobs/{job_id}/result")
    assert content_type == f"image/{output}"
    out = decode(body_bytes)
    assert out.size == expected.size
    assert mean_abs_diff(out.convert(expected.mode), expected) <= (0.5 if fmt == "HEIC" else 2.5)
    assert getattr(out, "n_frames", 1) == (2 if fmt == "AVIF-animated" else 1)


@pytest.mark.parametrize("way", ["store", "api"])
def test_an_animated_jpeg_xl_fails_with_a_sentence_and_the_host_stays_up(
    stack: GcpStack | AzureStack, way: str
) -> None:
    data = jxl_codestream(64 + (8 if isinstance(stack, AzureStack) else 0) + (1 if way == "api" else 0), 48,
                           animated=True)  # fmt: skip
    if way == "api":
        status, body = http_json("POST", f"{stack.api_url}/jobs", data, {"Content-Type": "image/jxl"})
        assert (status, body["error"]) == (415, "unsupported_media_type")
        assert "animated JPEG XL is not supported" in body["message"]
        return
    key = f"uploads/animated {len(data)}.jxl"
    stack.store().put(key, data)
    job = wait_for_job(stack.api_url, job_id_for(key, hashlib.md5(data).hexdigest()), timeout=60)
    assert (job["status"], job["result"], job["attempts"]) == ("FAILED", None, 1)
    assert "animated JPEG XL is not supported" in job["error"]
    assert http_json("GET", f"{stack.api_url}/jobs/{'0' * 32}")[0] == 404  # the host still answers
