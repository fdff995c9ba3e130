"""The devhost's blob triggers: Event Grid's ``BlobCreated`` events at the blobs extension's webhook.

``POST /runtime/webhooks/blobs?functionName=Host.Functions.NAME`` answers Event
Grid's subscription-validation handshake, then takes notifications. A handler
that fails (or a blob that cannot be read for a moment) answers 500, so Event
Grid retries. The trigger gets what the Python worker gives it: an SDK-type
client (no byte read), or an ``InputStream``.
"""

from __future__ import annotations

import json
import logging
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import azure.functions as func
from azurefunctions.extensions.base import Datum
from azurefunctions.extensions.bindings.blob.blobClientConverter import BlobClientConverter

from core.clouds.azure_blob import AzureBlobObjectStore
from core.errors import BadRequest, CoreError, NotFound
from core.ports import ObjectStore

log = logging.getLogger("devhost")
WEBHOOK_PATH = "/runtime/webhooks/blobs"


@dataclass(frozen=True)
class BlobTrigger:
    function: str
    container: str
    prefix: str
    connection: str
    """The app setting naming the storage account."""
    handler: Callable[[Any], None]


@dataclass
class BlobEvents:
    triggers: list[BlobTrigger] = field(default_factory=list)
    store: Callable[[str], ObjectStore] = AzureBlobObjectStore
    """The store a trigger's container is read from (tests pass a fake)."""

    def webhook(self, query: dict[str, str], headers: dict[str, str], body: bytes) -> tuple[int, bytes]:
        """Event Grid's handshake, or its events for the function the query names."""
        name = query.get("functionName", "").removeprefix("Host.Functions.")
        trigger = next((t for t in self.triggers if t.function == name), None)
        if trigger is None:
            return 404, json.dumps({"error": f"no blob trigger named {name!r}"}).encode()
        try:
            events = json.loads(body)
        except ValueError:
            return 400, b'{"error": "the body is not Event Grid JSON"}'
        if not isinstance(events, list):
            events = [events]
        kind = {k.lower(): v for k, v in headers.items()}.get("aeg-event-type", "Notification")
        if kind == "SubscriptionValidation":
            code = events[0].get("data", {}).get("validationCode") if events and isinstance(events[0], dict) else None
            return 200, json.dumps({"validationResponse": code}).encode()
        status = 200
        for event in events:
            if not isinstance(event, dict) or event.get("eventType") != "Microsoft.Storage.BlobCreated":
                continue
            subject = str(event.get("subject", ""))
            owner, _, key = subject.removeprefix("/blobServices/default/containers/").partition("/blobs/")
            if owner == trigger.container and key.startswith(trigger.prefix) and not self.deliver(trigger, key):
                status = 500  # Event Grid retries the delivery
        return status, b""

    def deliver(self, trigger: BlobTrigger, key: str) -> bool:
        """Call the trigger for one blob; False when it should be delivered again."""
        try:
            argument = blob_argument(
                trigger.handler, self.store(trigger.container), trigger.connection, trigger.container, key
            )
        except NotFound:
            log.info("%s: %s vanished before delivery", trigger.function, key)
            return True
        except BadRequest as exc:  # a name no store takes ('a/../b'): it can never be delivered
            log.error("%s: dropped the event for %r: %s", trigger.function, key, exc)
            return True
        except CoreError as exc:  # storage unreachable: Event Grid retries the delivery
            log.warning("%s: cannot read %s/%s: %s", trigger.function, trigger.container, key, exc)
            return False
        try:
            trigger.handler(argument)
        except Exception:
            log.exception("%s: the delivery of %s failed", trigger.function, key)
            return False
        return True


def blob_argument(handler: Callable[[Any], None], store: ObjectStore, connection: str, container: str, key: str) -> Any:
    """What the Python worker passes a blob trigger: an SDK client, or the bytes as ``func.InputStream``.

    For an SDK-type parameter (``azurefunctions.extensions.bindings.blob``), the host
    sends model binding data (connection, container, blob name) and the extension's
    converter makes the client: no byte of the blob is read. ``NotFound`` if the blob is gone.
    """
    hints = [hint for name, hint in typing.get_type_hints(handler).items() if name != "return"]
    parameter = hints[0] if hints else None
    if isinstance(parameter, type) and BlobClientConverter.check_input_type_annotation(parameter):
        store.head(key)
        content = json.dumps({"Connection": connection, "ContainerName": container, "BlobName": key})
        binding = types.SimpleNamespace(
            version="1.0", source="AzureStorageBlobs", content_type="application/json", content=content
        )
        return BlobClientConverter.decode(Datum(binding, "model_binding_data"), trigger_metadata=None, pytype=parameter)
    data = store.get(key).data
    uri = f"devhost://{container}/{key}"
    return func.blob.InputStream(data=data, name=f"{container}/{key}", uri=uri, length=len(data))
