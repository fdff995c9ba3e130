"""``PubSubTaskQueue``: the TaskQueue port on google-cloud-pubsub.

The payload is published as UTF-8 JSON in the message data. The client honours
``PUBSUB_EMULATOR_HOST``; the project comes from the argument or
``GOOGLE_CLOUD_PROJECT``.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from google.api_core import exceptions as gexc
from google.cloud import pubsub_v1
from google.cloud.pubsub_v1.subscriber.message import Message
from google.cloud.pubsub_v1.subscriber.scheduler import ThreadScheduler

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


def ensure_subscription(
    subscription: str,
    topic: str,
    *,
    push_endpoint: str | None = None,
    project: str | None = None,
    dead_letter_topic: str | None = None,
    max_delivery_attempts: int = 5,
    min_backoff_seconds: int = 1,
    max_backoff_seconds: int = 10,
    ack_deadline_seconds: int = 60,
) -> str:
    """Create a subscription (push to ``push_endpoint``, else pull; optionally with a dead-letter policy) if absent."""
    path = subscription_path(subscription, project)
    request: dict[str, Any] = {
        "name": path,
        "topic": topic_path(topic, project),
        "ack_deadline_seconds": ack_deadline_seconds,
        "retry_policy": {
            "minimum_backoff": {"seconds": min_backoff_seconds},
            "maximum_backoff": {"seconds": max_backoff_seconds},
        },
    }
    if push_endpoint:
        request["push_config"] = {"push_endpoint": push_endpoint}
    if dead_letter_topic:
        request["dead_letter_policy"] = {
            "dead_letter_topic": topic_path(dead_letter_topic, project),
            "max_delivery_attempts": max_delivery_attempts,
        }
    with contextlib.suppress(gexc.AlreadyExists):
        pubsub_v1.SubscriberClient().create_subscription(request=request)
    return path


def subscription_exists(subscription: str, project: str | None = None, client: Any = None) -> bool:
    """Whether the subscription exists (``client``: a ``SubscriberClient`` to reuse)."""
    try:
        (client or pubsub_v1.SubscriberClient()).get_subscription(subscription=subscription_path(subscription, project))
    except gexc.NotFound:
        return False
    return True


def publish_raw(topic: str, data: bytes, attributes: Mapping[str, str] | None = None) -> str:
    """Publish bytes with attributes as they are (tests that replay notifications)."""
    publisher = pubsub_v1.PublisherClient()
    return str(publisher.publish(topic_path(topic), data, **dict(attributes or {})).result(timeout=30))


@dataclass(frozen=True)
class Delivery:
    """One message as a subscriber receives it."""

    data: bytes
    attributes: Mapping[str, str]
    message_id: str
    publish_time: datetime
    delivery_attempt: int | None
    """Counted by Pub/Sub where the subscription has a dead-letter policy."""


class Stream:
    """Streaming pulls of several subscriptions, each handled by its own pool; ``close()`` ends them."""

    def __init__(self) -> None:
        self._subscriber = pubsub_v1.SubscriberClient()
        self._futures: list[Any] = []
        self._names: dict[Any, str] = {}

    def subscribe(
        self, subscription: str, handle: Callable[[Delivery], bool], *, concurrency: int, max_lease_seconds: int
    ) -> None:
        """Call ``handle`` for each message, ``concurrency`` at once; True acks it, False nacks it."""

        def callback(message: Message) -> None:
            delivery = Delivery(
                message.data,
                dict(message.attributes),
                message.message_id,
                message.publish_time,
                message.delivery_attempt,
            )
            if handle(delivery):
                message.ack()
            else:
                message.nack()

        name = subscription.rsplit("/", 1)[-1]
        flow = pubsub_v1.types.FlowControl(max_messages=concurrency, max_lease_duration=max_lease_seconds)
        future = self._subscriber.subscribe(
            subscription_path(subscription),
            callback=callback,
            flow_control=flow,
            scheduler=ThreadScheduler(ThreadPoolExecutor(concurrency, thread_name_prefix=name)),
        )
        self._futures.append(future)
        self._names[future] = subscription_path(subscription)

    def exists(self, subscription: str) -> bool:
        return subscription_exists(subscription, client=self._subscriber)

    def unsubscribe(self, subscription: str) -> None:
        """End the streaming pull of one subscription (it was deleted, or is no longer wanted)."""
        path = subscription_path(subscription)
        for future in [f for f, name in self._names.items() if name == path]:
            future.cancel()
            with contextlib.suppress(Exception):
                future.result(timeout=10)
            self._futures.remove(future)
            del self._names[future]

    def close(self) -> None:
        for future in self._futures:
            future.cancel()
        for future in self._futures:
            with contextlib.suppress(Exception):  # a cancelled stream ends with whatever it was doing
                future.result(timeout=10)
        self._futures.clear()
        self._names.clear()
        self._subscriber.close()
