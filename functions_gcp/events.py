"""Plain values out of GCP event payloads: storage notifications and Pub/Sub messages.

Two deploy styles deliver an upload to ``on_upload``:

- Eventarc (``--trigger-bucket``): type ``google.cloud.storage.object.v1.finalized``,
  data is the GCS object resource (``bucket``, ``name``, ``md5Hash``, ...).
- A bucket notification on a topic (``--trigger-topic``): type
  ``google.cloud.pubsub.topic.v1.messagePublished``, ``data.message`` has
  attributes ``eventType=OBJECT_FINALIZE``, ``bucketId``, ``objectId`` and, as
  base64 data, the object resource in the JSON_API_V1 format.

Anything malformed raises ``BadRequest``: the handler logs it and acknowledges,
so a bad message is never redelivered forever.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from core.errors import BadRequest

FINALIZED = "google.cloud.storage.object.v1.finalized"
DELETED = "google.cloud.storage.object.v1.deleted"
PUBLISHED = "google.cloud.pubsub.topic.v1.messagePublished"
DEAD_LETTER_COUNT = "CloudPubSubDeadLetterSourceDeliveryCount"


@dataclass(frozen=True)
class StorageObject:
    """The upload an event is about."""

    bucket: str
    key: str
    md5: str | None
    """Lowercase hex, or None (composite objects have no MD5)."""
    content_type: str | None
    created: datetime | None = None
    """The object's ``timeCreated``: which cloud processes an upload during a cutover depends on it."""
    generation: str | None = None
    change: str = "OBJECT_FINALIZE"
    """OBJECT_FINALIZE or OBJECT_DELETE (``storage_change`` only)."""
    resource: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)
    """The object's JSON API resource as the notification carried it (empty when it carried none)."""


def as_dict(data: Any) -> dict[str, Any]:
    """Event data as a dict: CloudEvents give a dict, or bytes/str of JSON in binary mode."""
    if isinstance(data, bytes | str):
        try:
            data = json.loads(data)
        except ValueError as exc:
            raise BadRequest(f"event data is not JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise BadRequest(f"event data is not a JSON object: {type(data).__name__}")
    return data


def storage_object(event_type: str, data: Any) -> StorageObject | None:
    """The finalized object in an Eventarc or Pub/Sub notification event; None for other notifications."""
    found = storage_change(event_type, data)
    return found if found is not None and found.change == "OBJECT_FINALIZE" else None


def storage_change(event_type: str, data: Any) -> StorageObject | None:
    """The object a finalize or delete notification is about; None for other notifications (metadata updates)."""
    payload = as_dict(data)
    if event_type in (FINALIZED, DELETED):
        resource, change = payload, "OBJECT_FINALIZE" if event_type == FINALIZED else "OBJECT_DELETE"
    elif event_type == PUBLISHED:
        message = _message(payload)
        attributes = message.get("attributes") or {}
        change = str(attributes.get("eventType"))
        if change not in ("OBJECT_FINALIZE", "OBJECT_DELETE"):
            return None  # OBJECT_METADATA_UPDATE, OBJECT_ARCHIVE: nothing to do
        if change == "OBJECT_DELETE" and attributes.get("overwrittenByGeneration"):
            return None  # an overwrite, not a delete: the new generation's OBJECT_FINALIZE says all there is
        resource = _decoded_json(message) if message.get("data") else {}
        resource = {"bucket": attributes.get("bucketId"), "name": attributes.get("objectId"), **resource}
    else:
        raise BadRequest(f"unexpected event type {event_type!r}: expected {FINALIZED} or {PUBLISHED}")
    bucket, key = resource.get("bucket"), resource.get("name")
    if not isinstance(bucket, str) or not bucket or not isinstance(key, str) or not key:
        raise BadRequest("the storage event names no bucket or object")
    generation = str(resource.get("generation") or "") or None
    created = _time(resource.get("timeCreated"))
    return StorageObject(bucket, key, _md5_hex(resource.get("md5Hash")), resource.get("contentType"), created,
                         generation, change, resource)  # fmt: skip


def _time(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def message_json(event_type: str, data: Any) -> dict[str, Any]:
    """The JSON object carried by a Pub/Sub messagePublished event."""
    if event_type != PUBLISHED:
        raise BadRequest(f"unexpected event type {event_type!r}: expected {PUBLISHED}")
    return _decoded_json(_message(as_dict(data)))


def delivery_attempts(data: Any) -> int | None:
    """How many deliveries a dead-lettered message had, if Pub/Sub says (None when it does not, or the
    event is no Pub/Sub message at all)."""
    try:
        message = _message(as_dict(data))
    except BadRequest:
        return None
    attributes = message.get("attributes") or {}
    raw = attributes.get(DEAD_LETTER_COUNT) or message.get("deliveryAttempt") or as_dict(data).get("deliveryAttempt")
    try:
        return int(raw) if raw is not None else None
    except (TypeError, ValueError):
        return None


def _message(payload: dict[str, Any]) -> dict[str, Any]:
    message = payload.get("message")
    if not isinstance(message, dict):
        raise BadRequest("not a Pub/Sub message: no 'message' object in the event data")
    return message


def _decoded_json(message: dict[str, Any]) -> dict[str, Any]:
    raw = message.get("data")
    if not isinstance(raw, str | bytes) or not raw:
        raise BadRequest("the Pub/Sub message has no data")
    try:
        decoded = base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise BadRequest(f"the Pub/Sub message data is not base64: {exc}") from exc
    return as_dict(decoded)


def _md5_hex(md5_base64: Any) -> str | None:
    if not isinstance(md5_base64, str) or not md5_base64:
        return None
    try:
        digest = base64.b64decode(md5_base64, validate=True)
    except (binascii.Error, ValueError):
        return None
    return digest.hex() if len(digest) == 16 else None
