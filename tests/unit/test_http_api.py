"""core.http_api: routes, codes and JSON bodies, on the in-memory fakes."""

from __future__ import annotations

import io
import re
import uuid
from dataclasses import replace

import pytest

from core.http_api import Request, Response, handle
from core.jobs import Status
from core.memory import InMemoryObjectStore, InMemoryTaskQueue
from core.pipeline import Services, process_job
from tests.helper import FailingReads, decode, encode, hopper

JPEG = encode(hopper(), "JPEG", quality=90)
BASE = "http://127.0.0.1:8080"


@pytest.fixture
def services() -> Services:
    return Services.over(InMemoryObjectStore(), InMemoryTaskQueue())


def call(
    services: Services, method: str, path: str, body: bytes = b"", query: dict[str, str] | None = None, **headers: str
) -> Response:
    return handle(services, Request(method, path, headers, body, BASE, query=query or {}))


def multipart(field: str, filename: str, data: bytes, content_type: str = "image/jpeg") -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="{field}"; filename="{filename}"\r\n'
            f"Content-Type: {content_type}\r\n\r\n"
        ).encode()
        + data
        + f"\r\n--{boundary}--\r\n".encode()
    )
    return body, f"multipart/form-data; boundary={boundary}"


def assert_error(response: Response, status: int, code: str) -> None:
    assert response.status == status, response.body
    assert response.content_type.startswith("application/json")
    body = response.json()
    assert set(body) >= {"error", "message"}
    assert body["error"] == code
    assert body["message"]


def test_raw_upload_returns_202_with_the_job_and_location(services: Services) -> None:
    response = call(services, "POST", "/jobs", JPEG, **{"Content-Type": "image/jpeg"})
    assert response.status == 202
    job = response.json()
    assert job["status"] == "PENDING"
    assert response.headers["Location"] == f"{BASE}/jobs/{job['id']}"
    assert call(services, "GET", f"/jobs/{job['id']}").json() == job


def test_raw_upload_takes_its_name_from_content_disposition(services: Services) -> None:
    response = call(services, "POST", "/jobs", JPEG, **{"Content-Disposition": 'attachment; filename="my cat.jpg"'})
    assert response.json()["source"].endswith("-my cat.jpg")


def test_multipart_upload_uses_field_file_and_its_filename(services: Services) -> None:
    body, content_type = multipart("file", "holiday photo.jpg", JPEG)
    response = call(services, "POST", "/jobs", body, **{"Content-Type": content_type})
    assert response.status == 202, response.body
    job = response.json()
    assert job["source"].endswith("-holiday photo.jpg")
    assert services.store.get(job["source"]).data == JPEG


def test_multipart_without_a_file_field_is_400(services: Services) -> None:
    body, content_type = multipart("picture", "a.jpg", JPEG)
    assert_error(call(services, "POST", "/jobs", body, **{"Content-Type": content_type}), 400, "bad_request")


def test_empty_upload_is_400(services: Services) -> None:
    assert_error(call(services, "POST", "/jobs", b""), 400, "bad_request")


def test_not_an_image_is_415_whatever_the_header_says(services: Services) -> None:
    response = call(services, "POST", "/jobs", b"<html>not an image</html>", **{"Content-Type": "image/png"})
    assert_error(response, 415, "unsupported_media_type")
    assert list(services.store.list()) == []


def test_an_image_with_a_wrong_content_type_is_sniffed_and_accepted(services: Services) -> None:
    response = call(services, "POST", "/jobs", JPEG, **{"Content-Type": "text/plain"})
    assert response.status == 202
    assert response.json()["content_type"] == "image/jpeg"


def test_oversize_upload_is_413_from_the_declared_length(services: Services, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GRAYSCALE_MAX_UPLOAD_BYTES", "1000")
    response = call(services, "POST", "/jobs", JPEG, **{"Content-Length": str(len(JPEG))})
    assert_error(response, 413, "payload_too_large")


class GuardedStream(io.BytesIO):
    """A body that records how far it was read."""

    def __init__(self, size: int) -> None:
        super().__init__(b"\xff" * size)
        self.consumed = 0

    def read(self, size: int | None = -1) -> bytes:
        chunk = super().read(size)
        self.consumed += len(chunk)
        return chunk


def test_oversize_stream_without_a_length_is_cut_at_the_cap(
    services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GRAYSCALE_MAX_UPLOAD_BYTES", "1000")
    stream = GuardedStream(10_000_000)
    response = handle(services, Request("POST", "/jobs", {}, stream, BASE))
    assert_error(response, 413, "payload_too_large")
    assert stream.consumed == 1001


def test_pixel_bomb_is_413(services: Services) -> None:
    from tests.helper import png_bytes

    assert_error(call(services, "POST", "/jobs", png_bytes(40_000, 40_000, 8, 2)), 413, "image_too_large")


def test_unknown_job_is_404(services: Services) -> None:
    assert_error(call(services, "GET", "/jobs/" + "0" * 32), 404, "not_found")
    assert_error(call(services, "GET", "/jobs/" + "0" * 32 + "/result"), 404, "not_found")


@pytest.mark.parametrize("job_id", ["..", "..%2F..%2Fetc", "a b", "%00", "x" * 500])
def test_odd_job_ids_are_404(services: Services, job_id: str) -> None:
    assert_error(call(services, "GET", f"/jobs/{job_id}"), 404, "not_found")


def test_result_is_409_with_the_status_until_done_then_the_image(services: Services) -> None:
    job = call(services, "POST", "/jobs", JPEG).json()
    pending = call(services, "GET", f"/jobs/{job['id']}/result")
    assert_error(pending, 409, "not_done")
    assert pending.json()["status"] == "PENDING"
    process_job(services, job["id"])
    done = call(services, "GET", f"/jobs/{job['id']}/result")
    assert done.status == 200
    assert done.content_type == "image/jpeg"
    assert decode(done.body).mode == "L"
    assert call(services, "GET", f"/jobs/{job['id']}").json()["status"] == "DONE"


def test_a_result_is_served_as_an_image_that_cannot_render_as_a_page(services: Services) -> None:
    job = call(services, "POST", "/jobs", JPEG).json()
    done = process_job(services, job["id"])
    assert done.result
    # A blob overwritten with a page, stored as text/html: still served as the image type of its key, and inert.
    services.store.put(done.result, b"<script>alert(1)</script>", content_type="text/html")
    response = call(services, "GET", f"/jobs/{job['id']}/result")
    assert response.status == 200
    assert response.headers["Content-Type"] == "image/jpeg"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Content-Security-Policy"] == "sandbox"
    assert response.headers["Cache-Control"].startswith("private")


def test_the_result_types_served_are_the_ones_the_renderer_writes() -> None:
    from core.http_api import RESULT_TYPES
    from core.imaging import EXTENSIONS

    assert {extension: content_type for content_type, extension in EXTENSIONS.items()} == RESULT_TYPES


def test_a_result_key_of_no_type_we_write_is_not_served(services: Services) -> None:
    job = call(services, "POST", "/jobs", JPEG).json()
    process_job(services, job["id"])
    services.store.put("results/x.html", b"<p>planted</p>", content_type="text/html")
    services.jobs.update(job["id"], lambda record: replace(record, result="results/x.html"))
    assert_error(call(services, "GET", f"/jobs/{job['id']}/result"), 500, "bad_result")


@pytest.mark.parametrize("path", ["/"])
def test_the_page_may_not_be_framed(services: Services, path: str) -> None:
    response = call(services, "GET", path)
    assert response.headers["Content-Security-Policy"] == "frame-ancestors 'none'"
    assert response.headers["X-Content-Type-Options"] == "nosniff"


def test_result_of_a_failed_job_is_409_with_the_reason(services: Services) -> None:
    services.store.put("uploads/bad.jpg", b"not an image")
    from core.pipeline import accept_upload

    job = accept_upload(services, "uploads/bad.jpg")
    assert job is not None
    assert process_job(services, job.id).status is Status.FAILED
    response = call(services, "GET", f"/jobs/{job.id}/result")
    assert_error(response, 409, "not_done")
    assert response.json()["status"] == "FAILED"
    assert "not a supported image" in response.json()["message"]


def test_page_is_html_that_uses_the_api(services: Services) -> None:
    response = call(services, "GET", "/")
    assert response.status == 200
    assert response.content_type.startswith("text/html")
    html = response.body.decode()
    assert "<form" in html and "fetch(" in html and "/result" in html
    # The file picker offers phone formats by extension too: some systems map .heic or .jxl to no image/* type.
    picker = re.search(r'<input id="file"[^>]*accept="([^"]+)"', html)
    assert picker and set(picker[1].split(",")) >= {"image/*", ".heic", ".heif", ".avif", ".jxl"}


@pytest.mark.parametrize(("method", "path"), [("DELETE", "/jobs/abc"), ("GET", "/jobs"), ("POST", "/")])
def test_wrong_method_is_405_with_allow(services: Services, method: str, path: str) -> None:
    response = call(services, method, path)
    assert_error(response, 405, "method_not_allowed")
    assert response.headers["Allow"]


def test_unknown_route_is_404_json(services: Services) -> None:
    assert_error(call(services, "GET", "/nope"), 404, "not_found")


def reads_fail(error: Exception) -> Services:
    """Services over a store whose every read raises ``error``."""
    return Services.over(FailingReads(error), InMemoryTaskQueue())


def test_a_store_outage_is_503_and_an_unexpected_error_500(services: Services) -> None:
    from core.errors import TransientError

    response = call(reads_fail(TransientError("injected outage")), "GET", "/jobs/" + "a" * 32)
    assert_error(response, 503, "unavailable")
    assert response.headers["Retry-After"]

    assert_error(call(reads_fail(RuntimeError("bug")), "GET", "/jobs/" + "a" * 32), 500, "internal")


@pytest.mark.parametrize(
    "leak",
    [
        "DefaultEndpointsProtocol=https;AccountName=acct;AccountKey=c2VjcmV0a2V5;",
        "https://acct.blob.core.windows.net/c/uploads/a.jpg?sv=2024-05-04&sig=c2lnbmF0dXJl",
        "https://storage.googleapis.com/b/o?X-Goog-Algorithm=GOOG4-RSA-SHA256&X-Goog-Signature=0a1b2c3d4e5f",
        "gray-runtime@proj-1.iam.gserviceaccount.com does not have storage.objects.get access",
        "client 66666666-7777-8888-9999-000000000000, tenant 11111111-2222-3333-4444-555555555555",
    ],
)
def test_credentials_in_an_error_never_reach_the_body(leak: str) -> None:
    from core.errors import TransientError

    response = call(reads_fail(TransientError(f"request to {leak} failed")), "GET", "/jobs/" + "a" * 32)
    assert_error(response, 503, "unavailable")
    for secret in ("c2VjcmV0a2V5", "c2lnbmF0dXJl", "0a1b2c3d4e5f", "gray-runtime@", "66666666-7777", "11111111-2222"):
        assert secret not in response.body.decode()
    assert "Traceback" not in response.body.decode()


def test_a_frozen_store_answers_uploads_with_503(services: Services) -> None:
    from migrate.cutover import freeze

    freeze(services.store, "moving to Azure")
    response = call(services, "POST", "/jobs", JPEG)
    assert_error(response, 503, "frozen")
    assert "moving to Azure" in response.json()["message"]
    assert response.headers["Retry-After"]
    assert call(services, "GET", "/").status == 200  # reading goes on


def test_retry_runs_a_failed_job_again_with_attempts_afresh(services: Services) -> None:
    job = call(services, "POST", "/jobs", JPEG[:-300], **{"Content-Type": "image/jpeg"}).json()
    assert process_job(services, job["id"]).status is Status.FAILED
    sent = len(services.queue.messages)  # type: ignore[attr-defined]
    response = call(services, "POST", f"/jobs/{job['id']}/retry")
    assert response.status == 202
    assert response.headers["Location"] == f"{BASE}/jobs/{job['id']}"
    retried = response.json()
    assert (retried["status"], retried["attempts"], retried["error"]) == ("PENDING", 0, None)
    assert services.queue.messages[sent:] == [{"job_id": job["id"]}]  # type: ignore[attr-defined]
    again = call(services, "POST", f"/jobs/{job['id']}/retry")
    assert again.status == 409
    assert (again.json()["error"], again.json()["status"]) == ("not_failed", "PENDING")
    assert len(services.queue.messages) == sent + 1, "a refused retry sends nothing"  # type: ignore[attr-defined]
    assert process_job(services, job["id"]).attempts == 1


@pytest.mark.parametrize(("method", "path", "status"), [
    ("POST", f"/jobs/{'0' * 32}/retry", 404),
    ("GET", f"/jobs/{'0' * 32}/retry", 405),
    ("POST", "/jobs/..%2F/retry", 404),
])  # fmt: skip
def test_retry_of_nothing_or_with_the_wrong_method(services: Services, method: str, path: str, status: int) -> None:
    assert call(services, method, path).status == status


def test_two_concurrent_retries_send_one_message(services: Services) -> None:
    import threading

    from core.pipeline import retry_job

    job = call(services, "POST", "/jobs", JPEG[:-300], **{"Content-Type": "image/jpeg"}).json()
    process_job(services, job["id"])
    sent = len(services.queue.messages)  # type: ignore[attr-defined]
    outcomes: list[bool] = []
    threads = [threading.Thread(target=lambda: outcomes.append(retry_job(services, job["id"])[1])) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == [False] * 7 + [True]
    assert len(services.queue.messages) == sent + 1  # type: ignore[attr-defined]


def test_two_routes_on_one_path_answer_by_method_and_405_names_both() -> None:
    import re

    from core.http_api import Request, Response, handle

    routes = [
        ("POST", re.compile(r"/things/?"), lambda request, match: Response(202, b"made")),
        ("GET", re.compile(r"/things/?"), lambda request, match: Response(200, b"listed")),
    ]
    services = Services.over(InMemoryObjectStore(), InMemoryTaskQueue())
    assert handle(services, Request("GET", "/things"), routes).body == b"listed"
    assert handle(services, Request("POST", "/things"), routes).status == 202
    denied = handle(services, Request("DELETE", "/things"), routes)
    assert denied.status == 405 and denied.headers["Allow"] == "POST, GET"


def test_the_page_route_serves_the_migration_shell_by_view_and_nothing_else(services: Services) -> None:
    migrations = call(services, "GET", "/", query={"view": "migrations"})
    assert migrations.status == 200 and "<title>Migrations</title>" in migrations.body.decode()
    assert migrations.headers["Content-Security-Policy"] == "frame-ancestors 'none'"
    upload = call(services, "GET", "/")
    for body in (migrations.body.decode(), upload.body.decode()):
        # What the pages share comes from the layout, once: the key read from the fragment, never from the query.
        assert body.count('new URLSearchParams(location.hash.slice(1)).get("code")') == 1
        assert "{{" not in body and body.startswith("<!doctype html>")
    assert "?view=migrations" in upload.body.decode()
    assert_error(call(services, "GET", "/", query={"view": "../migrate"}), 404, "not_found")


@pytest.mark.parametrize(
    ("raw", "path"),
    [("/jobs/abc", "/jobs/abc"), ("/jobs/..%2F..%2Fjobs", "/jobs/..%2F..%2Fjobs"), ("/a%20b/%252F", "/a b/%2F"),
     ("/migrations%2Fx", "/migrations%2Fx"), ("/%6Aobs", "/jobs")],
)  # fmt: skip
def test_a_path_is_decoded_once_and_an_encoded_slash_makes_no_segment(raw: str, path: str) -> None:
    from core.http_api import decoded_path

    assert decoded_path(raw) == path
