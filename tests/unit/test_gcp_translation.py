"""functions_gcp: event translation and the Cloud Logging format, without any cloud."""

from __future__ import annotations

import base64
import json
import logging
import types

import pytest

from core import logs
from core.errors import BadRequest
from functions_gcp import events


def b64json(value: object) -> str:
    return base64.b64encode(json.dumps(value).encode()).decode()


MD5 = base64.b64encode(bytes(range(16))).decode()


def test_eventarc_object() -> None:
    obj = events.storage_object(
        events.FINALIZED, {"bucket": "b", "name": "uploads/a b.jpg", "md5Hash": MD5, "contentType": "image/jpeg"}
    )
    assert obj == events.StorageObject("b", "uploads/a b.jpg", bytes(range(16)).hex(), "image/jpeg")


def test_pubsub_notification_uses_attributes_and_payload() -> None:
    data = {
        "message": {
            "data": b64json({"md5Hash": MD5, "contentType": "image/png"}),
            "attributes": {"eventType": "OBJECT_FINALIZE", "bucketId": "b", "objectId": "uploads/x.png"},
            "messageId": "1",
        }
    }
    obj = events.storage_object(events.PUBLISHED, data)
    assert obj is not None
    assert (obj.bucket, obj.key, obj.content_type) == ("b", "uploads/x.png", "image/png")


def test_binary_mode_data_as_bytes_is_parsed() -> None:
    raw = json.dumps({"bucket": "b", "name": "uploads/x"}).encode()
    obj = events.storage_object(events.FINALIZED, raw)
    assert obj is not None and obj.md5 is None


def test_composite_objects_without_md5() -> None:
    obj = events.storage_object(events.FINALIZED, {"bucket": "b", "name": "uploads/x", "crc32c": "AAAAAA=="})
    assert obj is not None and obj.md5 is None


@pytest.mark.parametrize(
    ("event_type", "data"),
    [
        ("google.cloud.storage.object.v1.archived", {"bucket": "b", "name": "x"}),
        (events.FINALIZED, {"bucket": "b"}),
        (events.FINALIZED, "not json"),
        (events.FINALIZED, [1, 2]),
        (events.PUBLISHED, {"message": {"attributes": {"eventType": "OBJECT_FINALIZE"}, "data": "%%%"}}),
        (events.PUBLISHED, {"subscription": "s"}),
    ],
)
def test_malformed_events_are_bad_requests(event_type: str, data: object) -> None:
    with pytest.raises(BadRequest):
        events.storage_object(event_type, data)


def test_job_message_and_dead_letter_attempts() -> None:
    data = {"message": {"data": b64json({"job_id": "j"}), "attributes": {events.DEAD_LETTER_COUNT: "7"}}}
    assert events.message_json(events.PUBLISHED, data) == {"job_id": "j"}
    assert events.delivery_attempts(data) == 7
    assert events.delivery_attempts({"message": {"data": b64json({})}}) is None
    with pytest.raises(BadRequest):
        events.message_json(events.FINALIZED, data)


def test_log_lines_are_cloud_logging_json_with_job_and_trace(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GOOGLE_CLOUD_PROJECT", "proj")
    formatter = logs.CloudLoggingFormatter()
    record = logging.LogRecord("x", logging.WARNING, __file__, 1, "hello %s", ("world",), None)
    trace = logs.trace_from_header("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
    with logs.context(job_id="job-1", trace=trace):
        line = json.loads(formatter.format(record))
    assert line == {
        "severity": "WARNING",
        "message": "hello world",
        "logger": "x",
        "job_id": "job-1",
        "logging.googleapis.com/trace": "projects/proj/traces/0af7651916cd43dd8448eb211c80319c",
    }
    assert "job_id" not in json.loads(formatter.format(record))


@pytest.mark.parametrize(
    ("header", "project", "trace"),
    [
        ("105445aa7843bc8bf206b12000100000/1;o=1", "proj", "projects/proj/traces/105445aa7843bc8bf206b12000100000"),
        ("105445aa7843bc8bf206b12000100000", "", "105445aa7843bc8bf206b12000100000"),
        (
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            "p",
            "projects/p/traces/0af7651916cd43dd8448eb211c80319c",
        ),
        ("garbage", "proj", None),
        ("105445aa7843bc8bf206b1200010000/1", "proj", None),  # 31 hex digits
        ("01-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", "proj", None),  # unknown traceparent version
        (None, "proj", None),
    ],
)
def test_cloud_trace_context_header(
    monkeypatch: pytest.MonkeyPatch, header: str | None, project: str, trace: str | None
) -> None:
    monkeypatch.setenv("GOOGLE_CLOUD_PROJECT", project)
    assert logs.trace_from_header(header) == trace


def test_the_decorators_put_the_trace_on_every_log_line_of_the_call(monkeypatch: pytest.MonkeyPatch) -> None:
    from cloudevents.http import CloudEvent

    from functions_gcp import framework

    monkeypatch.setenv("GOOGLE_CLOUD_PROJECT", "proj")
    seen: list[str | None] = []

    def handler(arg: object) -> str:
        record = logging.LogRecord("x", logging.INFO, __file__, 1, "inside", (), None)
        seen.append(json.loads(logs.CloudLoggingFormatter().format(record)).get("logging.googleapis.com/trace"))
        return "answer"

    event = CloudEvent(
        {
            "type": events.PUBLISHED,
            "source": "s",
            "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        },
        {},
    )

    request = types.SimpleNamespace(headers={"X-Cloud-Trace-Context": "105445aa7843bc8bf206b12000100000/1;o=1"})

    assert framework.cloud_event(handler)(event) == "answer"
    assert framework.http(handler)(request) == "answer"
    assert framework.cloud_event(handler)(CloudEvent({"type": events.PUBLISHED, "source": "s"}, {})) == "answer"
    assert seen == [
        "projects/proj/traces/0af7651916cd43dd8448eb211c80319c",
        "projects/proj/traces/105445aa7843bc8bf206b12000100000",
        None,
    ]


@pytest.mark.parametrize(
    "secret",
    [
        "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=c2VjcmV0a2V5;",
        "https://acct.blob.core.windows.net/c/b?sv=2024&sig=c2lnbmF0dXJl&se=2026",
        "Authorization: Bearer eyJhbGciOiJSUzI1NiJ9.payload.sig",
        '{"private_key": "-----BEGIN PRIVATE KEY-----\\nMIIE\\n-----END PRIVATE KEY-----\\n"}',
    ],
)
def test_credentials_never_reach_the_log(secret: str) -> None:
    record = logging.LogRecord("x", logging.ERROR, __file__, 1, "failed with %s", (secret,), None)
    line = logs.CloudLoggingFormatter().format(record)
    for fragment in ("c2VjcmV0a2V5", "c2lnbmF0dXJl", "payload.sig", "MIIE"):
        assert fragment not in line


def test_signed_url_signatures_are_masked() -> None:
    url = "https://storage.googleapis.com/b/o?X-Goog-Algorithm=GOOG4-RSA-SHA256&X-Goog-Signature=0a1b2c3d4e5f"
    record = logging.LogRecord("x", logging.ERROR, __file__, 1, "copy from %s failed", (url,), None)
    assert "0a1b2c3d4e5f" not in logs.CloudLoggingFormatter().format(record)


def test_a_delete_is_a_change_for_replication_and_nothing_for_processing() -> None:
    data = {"bucket": "b", "name": "uploads/x.jpg", "generation": "17", "timeCreated": "2026-11-28T01:02:03.456Z"}
    assert events.storage_object(events.DELETED, data) is None
    change = events.storage_change(events.DELETED, data)
    assert change is not None and (change.change, change.key, change.generation) == (
        "OBJECT_DELETE",
        "uploads/x.jpg",
        "17",
    )
    assert change.created is not None and change.created.isoformat() == "2026-11-28T01:02:03.456000+00:00"
    import base64
    import json

    message = {"attributes": {"eventType": "OBJECT_DELETE", "bucketId": "b", "objectId": "k"},
               "data": base64.b64encode(json.dumps({"generation": 5}).encode()).decode()}  # fmt: skip
    published = events.storage_change(events.PUBLISHED, {"message": message})
    assert published is not None and (published.change, published.generation) == ("OBJECT_DELETE", "5")
    metadata = {"attributes": {"eventType": "OBJECT_METADATA_UPDATE", "bucketId": "b", "objectId": "k"}}
    assert events.storage_change(events.PUBLISHED, {"message": metadata}) is None
    # GCS also sends OBJECT_DELETE for the generation an overwrite replaced, with overwrittenByGeneration: not a
    # delete to report or replicate (a job record's three writes would report two deletes), and no Azure write.
    overwritten = {**message, "attributes": {**message["attributes"], "overwrittenByGeneration": "6"}}
    assert events.storage_change(events.PUBLISHED, {"message": overwritten}) is None
