"""devstack.pubsub_push against Google's Pub/Sub emulator: Pub/Sub's push, parallel and at once."""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from google.cloud import pubsub_v1

from core.clouds import pubsub
from devstack.emulators import PubSubEmulator, free_port
from devstack.pubsub_push import PubSubPush, PushTarget
from functions_gcp import events
from tests.helper import unique_name

pytestmark = pytest.mark.emulator


class Endpoint:
    """A push endpoint on 127.0.0.1 that records each body and how many requests ran at once."""

    def __init__(self, answer: Callable[[dict[str, Any]], int], *, delay: float = 0.0, port: int = 0) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.in_flight = 0
        self.most_at_once = 0
        lock = threading.Lock()
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with lock:
                    endpoint.bodies.append(body)
                    endpoint.in_flight += 1
                    endpoint.most_at_once = max(endpoint.most_at_once, endpoint.in_flight)
                time.sleep(delay)
                with lock:
                    endpoint.in_flight -= 1
                self.send_response(answer(body))
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/projects/local/topics/t"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def wait_until(check: Callable[[], bool], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


@pytest.fixture
def topic(pubsub_env: PubSubEmulator) -> str:
    return pubsub.ensure_topic(unique_name("top"))


@pytest.fixture
def push() -> Iterator[Callable[..., PubSubPush]]:
    started: list[PubSubPush] = []

    def start(*targets: PushTarget) -> PubSubPush:
        forwarder = PubSubPush(list(targets))
        forwarder.start()
        started.append(forwarder)
        return forwarder

    yield start
    for forwarder in started:
        forwarder.stop()


def test_a_message_is_posted_in_the_push_format_with_its_delivery_attempt(topic: str, push: Any) -> None:
    endpoint = Endpoint(lambda body: 204)
    dead = pubsub.ensure_topic(unique_name("dead"))
    sub = pubsub.ensure_subscription(unique_name("sub"), topic, dead_letter_topic=dead, max_delivery_attempts=5)
    push(PushTarget(sub, endpoint.url, concurrency=2, ack_deadline=10, dead_letter=True))
    message_id = pubsub.publish_raw(topic, b'{"job_id": "j1"}', {"kind": "test", "odd": "ünï #?%"})
    wait_until(lambda: len(endpoint.bodies) == 1)
    (body,) = endpoint.bodies
    assert body["subscription"] == sub
    message = body["message"]
    assert base64.b64decode(message["data"]) == b'{"job_id": "j1"}'
    assert message["attributes"] == {"kind": "test", "odd": "ünï #?%"}
    assert message["messageId"] == message["message_id"] == message_id
    assert message["publishTime"].endswith("Z") and message["publishTime"] == message["publish_time"]
    assert events.delivery_attempts(body) == 1
    time.sleep(1.5)  # acked: never posted again
    assert len(endpoint.bodies) == 1
    endpoint.close()


def test_messages_are_posted_in_parallel_up_to_the_concurrency(topic: str, push: Any) -> None:
    # The emulator's own push posts one message at a time: at most 1 at once.
    endpoint = Endpoint(lambda body: 204, delay=0.6)
    sub = pubsub.ensure_subscription(unique_name("sub"), topic)
    forwarder = push(PushTarget(sub, endpoint.url, concurrency=3, ack_deadline=10))
    for i in range(7):
        pubsub.publish_raw(topic, str(i).encode())
    wait_until(lambda: len(endpoint.bodies) == 7 and endpoint.in_flight == 0)
    assert endpoint.most_at_once == 3
    assert forwarder.posted(sub, again=True) == 0
    posted = sorted(base64.b64decode(b["message"]["data"]) for b in endpoint.bodies)
    assert posted == [str(i).encode() for i in range(7)]
    endpoint.close()


def test_a_failing_endpoint_is_retried_then_the_message_is_dead_lettered(topic: str, push: Any) -> None:
    endpoint = Endpoint(lambda body: 500)
    dead = pubsub.ensure_topic(unique_name("dead"))
    dead_sub = pubsub.ensure_subscription(unique_name("dead-sub"), dead)
    sub = pubsub.ensure_subscription(
        unique_name("sub"),
        topic,
        dead_letter_topic=dead,
        max_delivery_attempts=5,
        min_backoff_seconds=0,
        max_backoff_seconds=1,
    )
    forwarder = push(PushTarget(sub, endpoint.url, concurrency=2, ack_deadline=10, dead_letter=True))
    pubsub.publish_raw(topic, b"doomed")
    wait_until(lambda: len(endpoint.bodies) >= 5)
    assert [events.delivery_attempts(b) for b in endpoint.bodies] == [1, 2, 3, 4, 5]
    # The endpoint has the fifth body before the forwarder has its answer and counts the post.
    wait_until(lambda: forwarder.posted(sub) >= 5)
    assert (forwarder.posted(sub), forwarder.posted(sub, again=True)) == (5, 4), "what a bench counts as redelivered"
    subscriber = pubsub_v1.SubscriberClient()
    received: list[Any] = []
    deadline = time.monotonic() + 30
    while not received and time.monotonic() < deadline:
        received = list(subscriber.pull(subscription=dead_sub, max_messages=1, timeout=5).received_messages)
    (dead_letter,) = received
    assert dead_letter.message.data == b"doomed"
    assert dead_letter.message.attributes[events.DEAD_LETTER_COUNT] == "5"
    time.sleep(1.5)
    assert len(endpoint.bodies) == 5  # never posted again once dead-lettered
    endpoint.close()


def test_an_endpoint_that_is_down_is_retried_until_it_answers(topic: str, push: Any) -> None:
    # A refused connection is a failed push (an instance killed mid-job), not a lost message.
    port = free_port()
    sub = pubsub.ensure_subscription(unique_name("sub"), topic, min_backoff_seconds=0, max_backoff_seconds=1)
    push(PushTarget(sub, f"http://127.0.0.1:{port}/projects/local/topics/t", concurrency=1, ack_deadline=10))
    pubsub.publish_raw(topic, b"kept")
    time.sleep(1.5)  # pushed and refused, more than once
    endpoint = Endpoint(lambda body: 204, port=port)
    wait_until(lambda: len(endpoint.bodies) == 1)
    assert base64.b64decode(endpoint.bodies[0]["message"]["data"]) == b"kept"
    time.sleep(1.5)
    assert len(endpoint.bodies) == 1
    endpoint.close()
