"""What the local Pub/Sub push posts, as functions-framework hands it to a function: the CloudEvent that Eventarc
makes for a function deployed with ``--trigger-topic``, its delivery attempt included."""

from __future__ import annotations

import json
import textwrap
from datetime import UTC, datetime
from pathlib import Path

import pytest
from functions_framework import create_app

from core.clouds.pubsub import Delivery
from devstack.pubsub_push import PushTarget, envelope, headers
from functions_gcp import events

CAPTURE = """
import json, os
import functions_framework

@functions_framework.cloud_event
def capture(event):
    with open(os.environ["CAPTURE_TO"], "a") as out:
        out.write(json.dumps({"id": event["id"], "type": event["type"], "source": event["source"],
                              "data": event.data}) + "\\n")
"""


@pytest.mark.parametrize("as_event", [True, False], ids=["cloud event", "plain push"])
def test_the_function_sees_the_message_and_its_delivery_attempt_only_from_a_cloud_event(
    as_event: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source, captured = tmp_path / "main.py", tmp_path / "captured.jsonl"
    source.write_text(textwrap.dedent(CAPTURE))
    monkeypatch.setenv("CAPTURE_TO", str(captured))
    topic = "projects/local/topics/t" if as_event else None
    target = PushTarget("projects/local/subscriptions/s", "http://unused", 1, 10, dead_letter=True, topic=topic)
    message = Delivery(b'{"job_id": "j1"}', {"odd": "ünï #?%"}, "m-7", datetime(2026, 12, 6, 17, 0, tzinfo=UTC), 3)
    client = create_app("capture", str(source), "cloudevent").test_client()
    body = json.dumps(envelope(target, message)).encode()
    response = client.post("/projects/local/topics/t", data=body, headers=headers(target, message))
    assert response.status_code == 200
    (seen,) = [json.loads(line) for line in captured.read_text().splitlines()]
    assert (seen["id"], seen["type"], seen["source"]) == (
        "m-7",
        events.PUBLISHED,
        "//pubsub.googleapis.com/projects/local/topics/t",
    )
    assert events.message_json(seen["type"], seen["data"]) == {"job_id": "j1"}
    assert seen["data"]["message"]["attributes"] == {"odd": "ünï #?%"}
    # functions-framework turns a plain push into an event of the message's data and attributes alone.
    assert events.delivery_attempts(seen["data"]) == (3 if as_event else None)
