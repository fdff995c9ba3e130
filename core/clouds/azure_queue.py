"""``AzureQueueTaskQueue``: the TaskQueue port on azure-storage-queue.

Messages are JSON, base64-encoded: that is what the Functions host expects by
default (``messageEncoding: base64`` in host.json) and what it writes to
``<queue>-poison``. Credentials are read like ``core.clouds.azure_blob``.
"""

from __future__ import annotations

import base64
import contextlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from azure.core import exceptions as aexc
from azure.storage.queue import (
    BinaryBase64DecodePolicy,
    BinaryBase64EncodePolicy,
    QueueClient,
)

from core.clouds import azure_session, identity
from core.clouds.azure_blob import translate_errors
from core.errors import BadRequest, NotFound

MAX_MESSAGE_BYTES = 64 * 1024  # Azure's limit, counted after base64


def make_queue_client(queue: str) -> QueueClient:
    """A queue client that base64-encodes and -decodes message bodies, as the Functions host does."""
    policies: dict[str, Any] = {
        "message_encode_policy": BinaryBase64EncodePolicy(),
        "message_decode_policy": BinaryBase64DecodePolicy(),
        "session": azure_session(),
    }
    return identity.azure_storage_client(
        "queue",
        lambda connection_string: QueueClient.from_connection_string(connection_string, queue, **policies),
        lambda url, credential: QueueClient(url, queue, credential=credential, **policies),
    )


def encode(payload: Mapping[str, Any]) -> bytes:
    """The message body before base64: compact UTF-8 JSON."""
    return json.dumps(dict(payload), separators=(",", ":"), ensure_ascii=False).encode()


def decode(body: bytes | str) -> Any:
    """Parse a message body as JSON, whether the client already decoded base64 or not."""
    text = body.decode() if isinstance(body, bytes) else body
    return json.loads(text)


@dataclass(frozen=True)
class Received:
    """One message taken from the queue: its body and what it takes to delete or release it."""

    body: bytes
    id: str
    pop_receipt: str
    dequeue_count: int
    inserted: datetime | None = None
    expires: datetime | None = None

    @property
    def payload(self) -> Any:
        """The body as JSON (``ValueError`` if it is not)."""
        return decode(self.body)


class AzureQueueTaskQueue:
    """A ``TaskQueue`` on one Azure Storage Queue; creates the queue on first use."""

    def __init__(self, queue: str, *, client: QueueClient | None = None) -> None:
        self.queue_name = queue
        self._client = client

    @property
    def client(self) -> QueueClient:
        if self._client is None:
            self._client = make_queue_client(self.queue_name)
        return self._client

    def create_queue(self) -> None:
        """Create the queue if it does not exist."""
        with translate_errors(self.queue_name), contextlib.suppress(aexc.ResourceExistsError):
            self.client.create_queue()

    def send(self, payload: Mapping[str, Any]) -> str:
        body = encode(payload)
        size = len(base64.b64encode(body))
        if size > MAX_MESSAGE_BYTES:
            raise BadRequest(f"message of {size} bytes (base64) is over Azure's {MAX_MESSAGE_BYTES}")
        try:
            with translate_errors(self.queue_name):
                return str(self.client.send_message(body).id)
        except NotFound:
            self.create_queue()
            with translate_errors(self.queue_name):
                return str(self.client.send_message(body).id)

    def receive(self, *, max_messages: int = 32, visibility_timeout: int = 30) -> list[Received]:
        """Take up to ``max_messages``, hidden for ``visibility_timeout`` seconds until deleted."""
        with translate_errors(self.queue_name):
            messages = self.client.receive_messages(
                max_messages=max_messages, messages_per_page=max_messages, visibility_timeout=visibility_timeout
            )
            taken = []
            for message in messages:
                body = message.content if isinstance(message.content, bytes) else str(message.content).encode()
                taken.append(
                    Received(
                        body,
                        message.id,
                        message.pop_receipt or "",
                        message.dequeue_count or 0,
                        message.inserted_on,
                        message.expires_on,
                    )
                )
                if len(taken) >= max_messages:
                    break
        return taken

    def delete(self, message: Received) -> None:
        """Delete a message that was handled."""
        with translate_errors(self.queue_name):
            self.client.delete_message(message.id, message.pop_receipt)

    def release(self, message: Received, *, visibility_timeout: int) -> None:
        """Make a message visible again after ``visibility_timeout`` seconds (a retry)."""
        with translate_errors(self.queue_name):
            self.client.update_message(message.id, message.pop_receipt, visibility_timeout=visibility_timeout)

    def send_body(self, body: bytes) -> str:
        """Enqueue a body as it is (the host's move of a message to the poison queue)."""
        with translate_errors(self.queue_name):
            try:
                return str(self.client.send_message(body).id)
            except aexc.ResourceNotFoundError:
                pass
        self.create_queue()
        with translate_errors(self.queue_name):
            return str(self.client.send_message(body).id)
