"""Event Grid for Azurite: blob events pushed to webhooks as soon as a blob is committed, as on Azure.

Azurite has no Event Grid. ``EventGridProxy`` is a small forwarding proxy in
front of Azurite's blob endpoint: clients use its address (the stack's
connection string points at it), and every request goes on to Azurite
unchanged. When Azurite answers a commit with success (Put Blob, Put Block
List, Copy Blob, Put Blob From URL) for a blob under a subscription's subject
prefix, the proxy posts ``Microsoft.Storage.BlobCreated`` in the Event Grid
schema to the subscription's webhook, as Event Grid does:

- a subscription is validated first: the webhook must echo the ``validationCode``
  of a ``Microsoft.EventGrid.SubscriptionValidationEvent`` (``aeg-event-type:
  SubscriptionValidation``), or the subscription is refused;
- events go out after the commit's answer, one POST each (``aeg-event-type:
  Notification``), and a webhook that does not answer 2xx is retried on Event
  Grid's schedule (10 s, 30 s, 1 min, 5 min, 10 min, 30 min, 1 h, then hourly,
  for up to 30 attempts); ``retry_delays`` shortens it for tests.

Nothing lists a container. The migration benchmark talks to Azurite directly.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from devstack.proxy import ForwardingProxy

log = logging.getLogger("devstack.eventgrid")

EVENT_GRID_RETRY_DELAYS = (10.0, 30.0, 60.0, 300.0, 600.0, 1800.0, *([3600.0] * 23))
"""Event Grid's documented schedule for a failing webhook: 30 attempts in all over about a day."""


@dataclass(frozen=True)
class Subscription:
    endpoint: str
    subject_begins_with: str


def commit_api(method: str, query: dict[str, str], headers: dict[str, str], status: int) -> str | None:
    """The Event Grid ``data.api`` of a request that committed a blob, or None."""
    if method != "PUT" or status not in (201, 202):
        return None
    comp = query.get("comp")
    if comp == "blocklist":
        return "PutBlockList"
    if comp is not None:
        return None
    if "x-ms-copy-source" in headers:
        return "PutBlobFromUrl" if "x-ms-blob-type" in headers else "CopyBlob"
    return "PutBlob" if headers.get("x-ms-blob-type", "").lower() == "blockblob" else None


class EventGridProxy(ForwardingProxy):
    """``with EventGridProxy(azurite_blob_port) as grid:``; ``grid.subscribe(webhook, subject_begins_with=...)``."""

    def __init__(self, upstream_port: int, *, host: str = "127.0.0.1", retry_delays: tuple[float, ...] = ()) -> None:
        super().__init__(upstream_port, host=host)
        self.retry_delays = retry_delays or EVENT_GRID_RETRY_DELAYS
        self.subscriptions: list[Subscription] = []
        self.delivered = 0
        self.failed_deliveries = 0
        self._stopping = threading.Event()
        self._senders = ThreadPoolExecutor(max_workers=16, thread_name_prefix="eventgrid")

    def __enter__(self) -> EventGridProxy:
        super().__enter__()
        return self

    def stop(self) -> None:
        self._stopping.set()
        super().stop()
        self._senders.shutdown(wait=False, cancel_futures=True)

    # Subscriptions ---------------------------------------------------------------------------------

    def subscribe(self, endpoint: str, *, subject_begins_with: str, timeout: float = 30) -> None:
        """Validate ``endpoint`` with Event Grid's handshake, then send it the matching events."""
        code = str(uuid.uuid4())
        event = {
            "id": str(uuid.uuid4()),
            "topic": "/subscriptions/local/resourceGroups/local/providers/Microsoft.Storage/storageAccounts/local",
            "subject": "",
            "data": {"validationCode": code, "validationUrl": None},
            "eventType": "Microsoft.EventGrid.SubscriptionValidationEvent",
            "eventTime": _now(),
            "metadataVersion": "1",
            "dataVersion": "2",
        }
        deadline = time.monotonic() + timeout
        while True:
            try:
                status, body = _post(endpoint, [event], "SubscriptionValidation")
                answer = json.loads(body or b"{}")
                if status == 200 and answer.get("validationResponse") == code:
                    break
                raise ValueError(f"the webhook answered {status} {body[:200]!r}, not the validation code")
            except (OSError, ValueError) as exc:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"Event Grid could not validate {endpoint}: {exc}") from exc
                time.sleep(0.2)
        self.subscriptions.append(Subscription(endpoint, subject_begins_with))

    def observe(self, method: str, path: str, headers: dict[str, str], status: int, answer: dict[str, str]) -> None:
        """Publish BlobCreated for a successful commit that a subscription covers."""
        if method != "PUT" or not self.subscriptions:  # most requests: reads, lists, queue polls
            return
        split = urllib.parse.urlsplit(path)
        query = dict(urllib.parse.parse_qsl(split.query))
        lowered = {k.lower(): v for k, v in headers.items()}
        api = commit_api(method, query, lowered, status)
        parts = urllib.parse.unquote(split.path).lstrip("/").split("/", 2)
        if api is None or len(parts) < 3:
            return
        account, container, key = parts
        subject = f"/blobServices/default/containers/{container}/blobs/{key}"
        event = {
            "topic": f"/subscriptions/local/resourceGroups/local/providers/Microsoft.Storage/storageAccounts/{account}",
            "subject": subject,
            "eventType": "Microsoft.Storage.BlobCreated",
            "id": str(uuid.uuid4()),
            "data": {
                "api": api,
                "requestId": answer.get("x-ms-request-id", ""),
                "eTag": answer.get("etag", ""),
                "contentType": lowered.get("x-ms-blob-content-type") or lowered.get("content-type", ""),
                "contentLength": int(lowered.get("content-length") or 0) if api == "PutBlob" else None,
                "blobType": "BlockBlob",
                "url": f"http://{self.server.server_address[0]}:{self.port}/{account}/{container}/{key}",
                "sequencer": f"{time.time_ns():032x}",
            },
            "dataVersion": "",
            "metadataVersion": "1",
            "eventTime": _now(),
        }
        for subscription in self.subscriptions:
            if subject.startswith(subscription.subject_begins_with):
                self._senders.submit(self._deliver, subscription, event)

    def _deliver(self, subscription: Subscription, event: dict[str, Any]) -> None:
        for attempt, delay in enumerate((0.0, *self.retry_delays), start=1):
            if delay and self._stopping.wait(delay):
                return
            try:
                status, body = _post(subscription.endpoint, [event], "Notification")
            except OSError as exc:
                status, body = 0, str(exc).encode()
            if 200 <= status < 300:
                self.delivered += 1
                return
            log.warning("event %s to %s: attempt %d answered %s %s", event["subject"], subscription.endpoint,
                        attempt, status, body[:200])  # fmt: skip
        self.failed_deliveries += 1
        log.error("gave up delivering %s to %s", event["subject"], subscription.endpoint)


def _post(endpoint: str, events: list[dict[str, Any]], kind: str) -> tuple[int, bytes]:
    request = urllib.request.Request(
        endpoint,
        data=json.dumps(events).encode(),
        method="POST",
        headers={"Content-Type": "application/json", "aeg-event-type": kind, "aeg-subscription-name": "on-upload"},
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


def _now() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")
