"""``PubSubTaskQueue``: the TaskQueue port on google-cloud-pubsub.

The payload is published as UTF-8 JSON in the message data. The client honours
``PUBSUB_EMULATOR_HOST``; the project comes from the argument or
``GOOGLE_CLOUD_PROJECT``.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Mapping
from typing import Any

from google.api_core import exceptions as gexc
from google.cloud import pubsub_v1

from core import config
from core.errors import BadRequest, NotFound, TransientError

PROJECT_VAR = "GOOGLE_CLOUD_PROJECT"
MAX_MESSAGE_BYTES = 10 * 1024 * 1024  # Pub/Sub's limit on data per message


def project_id(project: str | None = None) -> str:
    """The project: argument, then ``GOOGLE_CLOUD_PROJECT``; ``ConfigError`` naming it otherwise."""
    return config.require(PROJECT_VAR, project)


class PubSubTaskQueue:
    """A ``TaskQueue`` that publishes to one Pub/Sub topic."""

    def __init__(
        self,
        topic: str,
        *,
        project: str | None = None,
        publisher: pubsub_v1.PublisherClient | None = None,
        timeout: float = 30.0,
    ) -> None:
        self.topic_path = topic_path(topic, project)
        self._publisher = publisher
        self.timeout = timeout

    @property
    def publisher(self) -> pubsub_v1.PublisherClient:
        if self._publisher is None:
            self._publisher = pubsub_v1.PublisherClient()
        return self._publisher

    def send(self, payload: Mapping[str, Any]) -> str:
        data = json.dumps(dict(payload), separators=(",", ":")).encode()
        if len(data) > MAX_MESSAGE_BYTES:
            raise BadRequest(f"message of {len(data)} bytes is over Pub/Sub's {MAX_MESSAGE_BYTES}")
        try:
            return str(self.publisher.publish(self.topic_path, data).result(timeout=self.timeout))
        except gexc.NotFound as exc:
            raise NotFound(f"no Pub/Sub topic {self.topic_path}") from exc
        except (gexc.GoogleAPICallError, gexc.RetryError, TimeoutError) as exc:
            raise TransientError(f"cannot publish to {self.topic_path}: {exc}") from exc


def emulator_host() -> str | None:
    """``PUBSUB_EMULATOR_HOST`` when the emulator is in use."""
    return os.environ.get("PUBSUB_EMULATOR_HOST") or None


def topic_path(topic: str, project: str | None = None) -> str:
    """``projects/P/topics/T`` for a short topic name; a full path is returned as it is."""
    return topic if topic.startswith("projects/") else f"projects/{project_id(project)}/topics/{topic}"


def subscription_path(subscription: str, project: str | None = None) -> str:
    """``projects/P/subscriptions/S`` for a short name; a full path is returned as it is."""
    if subscription.startswith("projects/"):
        return subscription
    return f"projects/{project_id(project)}/subscriptions/{subscription}"


def ensure_topic(topic: str, project: str | None = None) -> str:
    """Create the topic if it does not exist; return its path (for local stacks and tests)."""
    path = topic_path(topic, project)
    with contextlib.suppress(gexc.AlreadyExists):
        pubsub_v1.PublisherClient().create_topic(name=path)
    return path


def ensure_pull_subscription(subscription: str, topic: str, project: str | None = None) -> str:
    """Create a pull subscription on ``topic`` if it does not exist; return its path."""
    path = subscription_path(subscription, project)
    with contextlib.suppress(gexc.AlreadyExists):
        pubsub_v1.SubscriberClient().create_subscription(name=path, topic=topic_path(topic, project))
    return path


def ensure_push_subscription(
    subscription: str,
    topic: str,
    endpoint: str,
    *,
    project: str | None = None,
    dead_letter_topic: str | None = None,
    max_delivery_attempts: int = 5,
    min_backoff_seconds: int = 1,
    max_backoff_seconds: int = 10,
    ack_deadline_seconds: int = 60,
) -> str:
    """Create a push subscription (optionally with a dead-letter policy) if it does not exist."""
    path = subscription_path(subscription, project)
    request: dict[str, Any] = {
        "name": path,
        "topic": topic_path(topic, project),
        "push_config": {"push_endpoint": endpoint},
        "ack_deadline_seconds": ack_deadline_seconds,
        "retry_policy": {
            "minimum_backoff": {"seconds": min_backoff_seconds},
            "maximum_backoff": {"seconds": max_backoff_seconds},
        },
    }
    if dead_letter_topic:
        request["dead_letter_policy"] = {
            "dead_letter_topic": topic_path(dead_letter_topic, project),
            "max_delivery_attempts": max_delivery_attempts,
        }
    with contextlib.suppress(gexc.AlreadyExists):
        pubsub_v1.SubscriberClient().create_subscription(request=request)
    return path


def publish_raw(topic: str, data: bytes, attributes: Mapping[str, str] | None = None) -> str:
    """Publish bytes with attributes as they are (tests that replay notifications)."""
    publisher = pubsub_v1.PublisherClient()
    return str(publisher.publish(topic_path(topic), data, **dict(attributes or {})).result(timeout=30))


def pull_payloads(subscription: str, *, max_messages: int = 100, timeout: float = 5.0) -> list[dict[str, Any]]:
    """Pull up to ``max_messages`` JSON payloads and acknowledge them (local drivers and tests)."""
    subscriber = pubsub_v1.SubscriberClient()
    try:
        response = subscriber.pull(subscription=subscription, max_messages=max_messages, timeout=timeout)
    except gexc.DeadlineExceeded:
        return []
    received = list(response.received_messages)
    if received:
        subscriber.acknowledge(subscription=subscription, ack_ids=[m.ack_id for m in received])
    return [json.loads(m.message.data) for m in received]
