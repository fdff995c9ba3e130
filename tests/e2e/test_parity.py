"""Parity: the same HTTP scenarios against the GCP stack and the Azure stack, with identical answers."""

from __future__ import annotations

import http.client
import json
import urllib.parse
import urllib.request
import uuid
from typing import Any

import pytest

from core.imaging import grayscale
from tests.helper import (
    PHONE_FORMATS,
    decode,
    encode,
    hopper,
    http_json,
    jxl_codestream,
    phone_photo,
    png_bytes,
    wait_for_job,
)

pytestmark = [pytest.mark.e2e, pytest.mark.emulator]

JOB_KEYS = {"id", "status", "source", "result", "content_type", "input_format", "output_format", "error", "attempts",
            "created", "updated"}  # fmt: skip
JPEG = encode(hopper(), "JPEG", quality=90)


def multipart(data: bytes, filename: str) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    head = f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{filename}"\r\n'
    body = (head + "Content-Type: image/jpeg\r\n\r\n").encode() + data + f"\r\n--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


def shape(status: int, body: Any) -> tuple[int, Any]:
    """What must be identical across clouds: the code, and the JSON keys and error code."""
    if isinstance(body, dict):
        code = body.get("error") if "message" in body else None  # a job's "error" is its reason, not a code
        return status, (sorted(body), code, body.get("status"))
    return status, type(body).__name__


def chunked_post(url: str, data: bytes, piece: int = 64 * 1024) -> tuple[int, Any]:
    """POST ``data`` with ``Transfer-Encoding: chunked`` (no Content-Length), as a streaming client sends it."""
    split = urllib.parse.urlsplit(url)
    connection = http.client.HTTPConnection(split.netloc, timeout=60)
    try:
        chunks = (data[i : i + piece] for i in range(0, len(data), piece))
        connection.request("POST", split.path, body=chunks, headers={"Content-Type": "image/jpeg"}, encode_chunked=True)
        response = connection.getresponse()
        return response.status, json.loads(response.read() or b"null")
    finally:
        connection.close()


def values(status: int, body: Any) -> tuple[int, Any]:
    """What must be equal across clouds, value for value: everything but the times."""
    if isinstance(body, dict):
        return status, {k: ("<time>" if k in ("created", "updated") and v else v) for k, v in body.items()}
    return status, body


def scenarios(api: str) -> dict[str, tuple[int, Any]]:
    seen: dict[str, tuple[int, Any]] = {}

    def record(name: str, status: int, answer: Any) -> None:
        """Its shape (checked against EXPECTED) and its values, messages included (equal across clouds)."""
        seen[name] = shape(status, answer)
        seen[f"{name}, its values"] = values(status, answer)  # type: ignore[assignment]

    status, job = http_json("POST", f"{api}/jobs", JPEG, {"Content-Type": "image/jpeg"})
    record("upload raw", status, job)
    body, content_type = multipart(encode(hopper().rotate(90), "JPEG"), "form photo.jpg")
    record("upload multipart", *http_json("POST", f"{api}/jobs", body, {"Content-Type": content_type}))
    record("upload empty", *http_json("POST", f"{api}/jobs", b"", {"Content-Type": "image/jpeg"}))
    record("upload text", *http_json("POST", f"{api}/jobs", b"hello", {"Content-Type": "image/png"}))
    record("upload too large", *http_json("POST", f"{api}/jobs", b"\xff" * 1_200_000))
    chunked = chunked_post(f"{api}/jobs", encode(hopper().rotate(45), "JPEG"))
    record("upload chunked", *chunked)
    record("upload chunked too large", *chunked_post(f"{api}/jobs", b"\xff" * 2_000_000))
    record("upload pixel bomb", *http_json("POST", f"{api}/jobs", png_bytes(40_000, 40_000, 8, 2)))
    record("unknown job", *http_json("GET", f"{api}/jobs/{'0' * 32}"))
    record("unknown result", *http_json("GET", f"{api}/jobs/{'0' * 32}/result"))
    record("odd id", *http_json("GET", f"{api}/jobs/..%2F..%2Fjobs"))
    record("wrong method", *http_json("DELETE", f"{api}/jobs/{job['id']}"))
    done = wait_for_job(api, job["id"])
    record("job done", 200, done)
    status, failing = http_json("POST", f"{api}/jobs", JPEG[: len(JPEG) - 200], {"Content-Type": "image/jpeg"})
    failed = wait_for_job(api, failing["id"])
    record("failed job", 200, failed)
    record("result of failed", *http_json("GET", f"{api}/jobs/{failing['id']}/result"))
    status, retried = http_json("POST", f"{api}/jobs/{failing['id']}/retry")
    record("retry failed", status, retried)
    seen["retry counts afresh"] = (retried.get("attempts"), retried.get("error"))  # type: ignore[assignment]
    again = wait_for_job(api, failing["id"])
    record("retried job ends", 200, again)
    seen["retried attempts"] = (again["attempts"], again["error"] is not None)  # type: ignore[assignment]
    record("retry done", *http_json("POST", f"{api}/jobs/{job['id']}/retry"))
    record("retry unknown", *http_json("POST", f"{api}/jobs/{'0' * 32}/retry"))
    record("retry wrong method", *http_json("GET", f"{api}/jobs/{job['id']}/retry"))
    for fmt in PHONE_FORMATS:  # the same bytes on both clouds: the same ids, keys, formats and messages
        data = phone_photo(fmt, 7)[0]
        status, sent = http_json("POST", f"{api}/jobs", data, {"Content-Type": "image/heic"})
        record(f"upload {fmt}", status, sent)
        record(f"{fmt} done", 200, wait_for_job(api, sent["id"], timeout=60))
        seen[f"{fmt} result type"] = result_type(f"{api}/jobs/{sent['id']}/result")  # type: ignore[assignment]
        body, content_type = multipart(data, f"phone.{fmt.lower()}")
        record(f"upload {fmt} multipart", *http_json("POST", f"{api}/jobs", body, {"Content-Type": content_type}))
    record("upload animated JXL", *http_json("POST", f"{api}/jobs", jxl_codestream(64, 48, animated=True)))
    record("upload truncated HEIC", *http_json("POST", f"{api}/jobs", phone_photo("HEIC", 8)[0][:300]))
    return seen


def result_type(url: str) -> tuple[int, str]:
    with urllib.request.urlopen(url, timeout=30) as response:
        return response.status, response.headers["Content-Type"]


EXPECTED = {
    "upload raw": (202, (sorted(JOB_KEYS), None, "PENDING")),
    "upload multipart": (202, (sorted(JOB_KEYS), None, "PENDING")),
    "upload empty": (400, (["error", "message"], "bad_request", None)),
    "upload text": (415, (["error", "message"], "unsupported_media_type", None)),
    "upload too large": (413, (["error", "message"], "payload_too_large", None)),
    "upload chunked": (202, (sorted(JOB_KEYS), None, "PENDING")),
    "upload chunked too large": (413, (["error", "message"], "payload_too_large", None)),
    "upload pixel bomb": (413, (["error", "message"], "image_too_large", None)),
    "unknown job": (404, (["error", "message"], "not_found", None)),
    "unknown result": (404, (["error", "message"], "not_found", None)),
    "odd id": (404, (["error", "message"], "not_found", None)),
    "wrong method": (405, (["error", "message"], "method_not_allowed", None)),
    "job done": (200, (sorted(JOB_KEYS), None, "DONE")),
    "failed job": (200, (sorted(JOB_KEYS), None, "FAILED")),
    "result of failed": (409, (["error", "message", "status"], "not_done", "FAILED")),
    "retry failed": (202, (sorted(JOB_KEYS), None, "PENDING")),
    "retry counts afresh": (0, None),  # type: ignore[dict-item]
    "retried job ends": (200, (sorted(JOB_KEYS), None, "FAILED")),
    "retried attempts": (1, True),  # type: ignore[dict-item]
    "retry done": (409, (["error", "message", "status"], "not_failed", "DONE")),
    "retry unknown": (404, (["error", "message"], "not_found", None)),
    "retry wrong method": (405, (["error", "message"], "method_not_allowed", None)),
    **{f"upload {fmt}": (202, (sorted(JOB_KEYS), None, "PENDING")) for fmt in PHONE_FORMATS},
    **{f"upload {fmt} multipart": (202, (sorted(JOB_KEYS), None, "PENDING")) for fmt in PHONE_FORMATS},
    **{f"{fmt} done": (200, (sorted(JOB_KEYS), None, "DONE")) for fmt in PHONE_FORMATS},
    "HEIC result type": (200, "image/png"),  # type: ignore[dict-item]
    "AVIF result type": (200, "image/avif"),  # type: ignore[dict-item]
    "AVIF-animated result type": (200, "image/avif"),  # type: ignore[dict-item]
    "JXL result type": (200, "image/jpeg"),  # type: ignore[dict-item]
    "upload animated JXL": (415, (["error", "message"], "unsupported_media_type", None)),
    "upload truncated HEIC": (415, (["error", "message"], "unsupported_media_type", None)),
}


@pytest.fixture(scope="module")
def answers(request: pytest.FixtureRequest) -> dict[str, dict[str, tuple[int, Any]]]:
    return {
        "gcp": scenarios(request.getfixturevalue("gcp_stack").api_url),
        "azure": scenarios(request.getfixturevalue("azure_stack").api_url),
    }


@pytest.mark.parametrize("scenario", list(EXPECTED))
def test_both_clouds_answer_as_specified(answers: dict[str, dict[str, tuple[int, Any]]], scenario: str) -> None:
    assert answers["gcp"][scenario] == EXPECTED[scenario]
    assert answers["azure"][scenario] == EXPECTED[scenario]


def test_both_clouds_answer_identically(answers: dict[str, dict[str, tuple[int, Any]]]) -> None:
    # Job ids, keys, results and reasons derive from the bytes and the names, so they are equal too.
    assert answers["gcp"] == answers["azure"]
    done = answers["gcp"]["job done, its values"][1]
    assert done["status"] == "DONE" and done["result"].startswith("results/") and done["attempts"] == 1
    failed = answers["gcp"]["failed job, its values"][1]
    assert failed["status"] == "FAILED" and "truncated" in failed["error"] and failed["result"] is None
    formats = {"HEIC": ("heic", "png", ".png"), "AVIF": ("avif", "avif", ".avif"), "JXL": ("jxl", "jpeg", ".jpg")}
    for fmt, (name, output, extension) in formats.items():
        sent, done = answers["gcp"][f"upload {fmt}, its values"][1], answers["gcp"][f"{fmt} done, its values"][1]
        assert (sent["input_format"], sent["output_format"]) == (name, None)
        assert (done["input_format"], done["output_format"], done["result"][-len(extension) :]) == (
            name,
            output,
            extension,
        )


@pytest.mark.parametrize("stack", ["gcp_stack", "azure_stack"])
def test_the_page_and_the_result_bytes(request: pytest.FixtureRequest, stack: str) -> None:
    import urllib.request

    api = request.getfixturevalue(stack).api_url
    with urllib.request.urlopen(f"{api}/", timeout=10) as page:
        assert page.status == 200 and page.headers["Content-Type"].startswith("text/html")
    upload = encode(hopper().rotate(7), "PNG")
    status, job = http_json("POST", f"{api}/jobs", upload)
    assert status == 202
    wait_for_job(api, job["id"])
    with urllib.request.urlopen(f"{api}/jobs/{job['id']}/result", timeout=10) as result:
        assert result.headers["Content-Type"] == "image/png"
        served = decode(result.read())
    # The very pixels that grayscale() makes here, in the mode and size it makes them.
    expected = decode(grayscale(upload).data)
    assert (served.format, served.mode, served.size) == ("PNG", expected.mode, expected.size) == ("PNG", "L", (64, 48))
    assert served.tobytes() == expected.tobytes()
