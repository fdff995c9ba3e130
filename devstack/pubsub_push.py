"""Pub/Sub push for the emulator: messages posted to the functions as they are published, several at once.

Google's Pub/Sub emulator pushes each subscription's messages one at a time:
its push loop takes one message, posts it, waits for the answer, and sleeps
100 ms whenever the backlog is empty (``PushLoop``, ``checkIntervalMillis`` =
100 in cloud-pubsub-emulator 0.8.20). So every push hop waits up to 100 ms, and
a slow job holds every message behind it. Real Pub/Sub pushes at once and in
parallel, and Cloud Run functions take ``--concurrency`` requests per instance.

``PubSubPush`` does what the real service does, on the emulator's own
subscriptions: each is a pull subscription (with its dead-letter and retry
policies, which the emulator enforces), read by a streaming pull, and each
message is posted to the endpoint in the push format (``message`` with
``data``, ``attributes``, ``messageId``, ``publishTime``; ``subscription``;
``deliveryAttempt`` when a dead-letter policy is set), or as the CloudEvent
Eventarc makes of it for a function with a Pub/Sub trigger, up to
``concurrency`` at once. A 2xx answer acks the message; any other answer, a
refused connection or no answer within the ack deadline nacks it, so the
emulator redelivers it after the subscription's retry back-off and counts the
attempt towards the dead-letter topic.
"""

from __future__ import annotations

import base64
import json
import logging
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from typing import Any

from core.clouds.pubsub import Delivery, Stream
from functions_gcp.events import PUBLISHED

log = logging.getLogger("devstack.pubsub_push")


@dataclass(frozen=True)
class PushTarget:
    subscription: str
    """``projects/P/subscriptions/S``: a pull subscription on the emulator."""
    endpoint: str
    concurrency: int
    """Messages posted at once: the function's ``--concurrency`` (functions-framework's THREADS)."""
    ack_deadline: float
    """Seconds the endpoint has to answer, as Pub/Sub's push timeout is the ack deadline."""
    dead_letter: bool = False
    """The subscription has a dead-letter policy, so the push carries ``deliveryAttempt``."""
    topic: str | None = None
    """``projects/P/topics/T``: when set, each message is posted as Eventarc delivers it to a function with a
    Pub/Sub trigger (``--trigger-topic``): a CloudEvent in binary mode whose data is the push body. A plain push
    is turned into an event by functions-framework, which keeps only the message's data and attributes (and
    loses ``deliveryAttempt``)."""


def envelope(target: PushTarget, message: Delivery) -> dict[str, Any]:
    """The JSON body Pub/Sub posts to a push endpoint for ``message``."""
    published = _published(message)
    body: dict[str, Any] = {
        "message": {
            "data": base64.b64encode(message.data).decode(),
            "attributes": dict(message.attributes),
            "messageId": message.message_id,
            "message_id": message.message_id,
            "publishTime": published,
            "publish_time": published,
        },
        "subscription": target.subscription,
    }
    if target.dead_letter and message.delivery_attempt is not None:
        body["deliveryAttempt"] = message.delivery_attempt
    return body


def headers(target: PushTarget, message: Delivery) -> dict[str, str]:
    """The headers of the post: a plain push's, or with ``topic`` a binary-mode CloudEvent's (``ce-*``)."""
    found = {"Content-Type": "application/json", "User-Agent": "APIs-Google; devstack.pubsub_push"}
    if target.topic:
        found.update({"ce-specversion": "1.0", "ce-type": PUBLISHED, "ce-id": message.message_id,
                      "ce-source": f"//pubsub.googleapis.com/{target.topic}",
                      "ce-time": _published(message)})  # fmt: skip
    return found


def _published(message: Delivery) -> str:
    return message.publish_time.isoformat().replace("+00:00", "Z")


def post(target: PushTarget, message: Delivery) -> bool:
    """Post one message; True when the endpoint answered 2xx."""
    request = urllib.request.Request(
        target.endpoint,
        data=json.dumps(envelope(target, message)).encode(),
        headers=headers(target, message),
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=target.ack_deadline) as response:
            response.read()
            return 200 <= response.status < 300
    except urllib.error.HTTPError as exc:
        exc.read()
        log.info("push of %s to %s answered %s", message.message_id, target.endpoint, exc.code)
    except OSError as exc:  # refused, reset or timed out: the instance is down or too slow
        log.info("push of %s to %s failed: %s", message.message_id, target.endpoint, exc)
    return False


@dataclass
class PubSubPush:
    """Push every target's messages while started; ``with PubSubPush(targets):`` stops it on exit."""

    targets: list[PushTarget]
    watched: list[PushTarget] = field(default_factory=list)
    """Subscriptions made and deleted while the stack runs (live replication's, by ``plan --live`` and ``finish``):
    each is pushed while it exists, as Pub/Sub pushes a subscription from when it is made."""
    _stream: Stream | None = field(default=None, repr=False)
    _watching: threading.Event = field(default_factory=threading.Event, repr=False)
    last_post: dict[str, float] = field(default_factory=dict)
    """Subscription -> when its last post ended (``time.monotonic()``): how tests see a backlog drained."""
    posts: dict[str, int] = field(default_factory=dict)
    """Subscription -> messages posted so far: how tests see that nothing reached a function."""
    redelivered: dict[str, int] = field(default_factory=dict)
    """Subscription -> posts of a message posted before (nacked, or its lease lost): what benches count."""
    _seen: dict[str, set[str]] = field(default_factory=dict, repr=False)
    _counting: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def start(self) -> None:
        self._stream = Stream()
        for target in self.targets:
            self._subscribe(target)
        if self.watched:
            threading.Thread(target=self._watch, name="pubsub-push-watch", daemon=True).start()

    def _subscribe(self, target: PushTarget) -> None:
        assert self._stream is not None
        self._stream.subscribe(
            target.subscription,
            lambda message, target=target: self._post(target, message),  # type: ignore[misc]
            concurrency=target.concurrency,
            max_lease_seconds=max(10, int(target.ack_deadline)),
        )

    def _watch(self, every: float = 0.25) -> None:
        pushing: set[str] = set()
        while not self._watching.wait(every):
            stream = self._stream
            if stream is None:
                return
            for target in self.watched:
                try:
                    there = stream.exists(target.subscription)
                except Exception:  # the emulator is stopping, or restarting: look again later
                    continue
                if there and target.subscription not in pushing:
                    self._subscribe(target)
                    pushing.add(target.subscription)
                elif not there and target.subscription in pushing:
                    stream.unsubscribe(target.subscription)
                    pushing.discard(target.subscription)

    def _post(self, target: PushTarget, message: Delivery) -> bool:
        try:
            return post(target, message)
        finally:
            with self._counting:  # posts end on several threads at once
                self.last_post[target.subscription] = time.monotonic()
                self.posts[target.subscription] = self.posts.get(target.subscription, 0) + 1
                seen = self._seen.setdefault(target.subscription, set())
                if message.message_id in seen:
                    self.redelivered[target.subscription] = self.redelivered.get(target.subscription, 0) + 1
                seen.add(message.message_id)

    def posted(self, subscription_suffix: str, *, again: bool = False) -> int:
        """Posts so far to the subscriptions whose names end with ``subscription_suffix``; with ``again``, only
        the posts of a message posted before."""
        with self._counting:
            counts = self.redelivered if again else self.posts
            return sum(n for s, n in counts.items() if s.endswith(subscription_suffix))

    def wait_idle(self, subscription_suffix: str, quiet: float = 2.0, timeout: float = 300.0) -> float:
        """Wait until the subscription ending with ``subscription_suffix`` has posted nothing for ``quiet``
        seconds; the seconds waited. ``TimeoutError`` after ``timeout``."""
        began = time.monotonic()
        while time.monotonic() - began < timeout:
            last = max((t for s, t in self.last_post.items() if s.endswith(subscription_suffix)), default=0.0)
            if time.monotonic() - last >= quiet:
                return time.monotonic() - began
            time.sleep(0.2)
        raise TimeoutError(f"{subscription_suffix} still busy after {timeout:.0f} s")

    def stop(self) -> None:
        self._watching.set()
        if self._stream is not None:
            self._stream.close()
            self._stream = None

    def __enter__(self) -> PubSubPush:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
