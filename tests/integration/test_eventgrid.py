"""``devstack.eventgrid``: BlobCreated pushed on each commit through the proxy, after the handshake, with retries."""

from __future__ import annotations

import http.server
import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from azure.storage.blob import BlobServiceClient

from devstack.emulators import Azurite
from devstack.eventgrid import EventGridProxy, commit_api
from tests.helper import unique_name

pytestmark = pytest.mark.emulator


class Webhook:
    """A webhook that answers the handshake, records notifications, and fails the first ``failures``."""

    def __init__(self, *, failures: int = 0, validates: bool = True) -> None:
        self.events: list[dict[str, Any]] = []
        self.kinds: list[str] = []
        self.failures, self.validates = failures, validates
        hook = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                kind = self.headers.get("aeg-event-type", "")
                hook.kinds.append(kind)
                if kind == "SubscriptionValidation":
                    code = body[0]["data"]["validationCode"] if hook.validates else "wrong"
                    answer, status = json.dumps({"validationResponse": code}).encode(), 200
                elif hook.failures > 0:
                    hook.failures -= 1
                    answer, status = b"", 500
                else:
                    hook.events.extend(body)
                    answer, status = b"", 200
                self.send_response(status)
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/runtime/webhooks/blobs?functionName=Host.Functions.on_upload"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def wait(self, count: int, timeout: float = 10) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while len(self.events) < count and time.monotonic() < deadline:
            time.sleep(0.02)
        return self.events


@pytest.fixture
def grid(azurite: Azurite) -> Iterator[EventGridProxy]:
    with EventGridProxy(azurite.blob_port, retry_delays=(0.1, 0.2, 0.3)) as proxy:
        yield proxy


def client(azurite: Azurite, grid: EventGridProxy, container: str) -> Any:
    service = BlobServiceClient.from_connection_string(azurite.connection_string_via(grid.port))
    found = service.get_container_client(container)
    found.create_container()
    return found


def test_each_commit_under_the_prefix_is_pushed_once_in_the_event_grid_schema(
    azurite: Azurite, grid: EventGridProxy
) -> None:
    container = unique_name("eg")
    hook = Webhook()
    grid.subscribe(hook.url, subject_begins_with=f"/blobServices/default/containers/{container}/blobs/uploads/")
    assert hook.kinds == ["SubscriptionValidation"], "the handshake comes first"
    blobs = client(azurite, grid, container)
    blobs.upload_blob("uploads/one.jpg", b"x" * 10, content_settings=None)
    blobs.upload_blob("results/one.jpg", b"not subscribed")
    big = blobs.get_blob_client("uploads/big.bin")
    big.stage_block("b1", b"a" * 100)
    big.stage_block("b2", b"b" * 100)
    big.commit_block_list(["b1", "b2"])
    blobs.get_blob_client("uploads/copy.jpg").start_copy_from_url(blobs.get_blob_client("uploads/one.jpg").url)
    events = hook.wait(3)
    time.sleep(0.3)  # nothing more comes
    by_key = {e["subject"].rsplit("/blobs/", 1)[1]: e for e in events}
    assert sorted(by_key) == ["uploads/big.bin", "uploads/copy.jpg", "uploads/one.jpg"] and len(events) == 3
    assert {k: e["data"]["api"] for k, e in by_key.items()} == {
        "uploads/one.jpg": "PutBlob", "uploads/big.bin": "PutBlockList", "uploads/copy.jpg": "CopyBlob",
    }  # fmt: skip
    one = by_key["uploads/one.jpg"]
    assert one["eventType"] == "Microsoft.Storage.BlobCreated"
    assert one["subject"] == f"/blobServices/default/containers/{container}/blobs/uploads/one.jpg"
    assert set(one) >= {"id", "topic", "subject", "eventType", "eventTime", "data", "dataVersion", "metadataVersion"}
    assert one["data"]["blobType"] == "BlockBlob" and one["data"]["eTag"]
    assert set(hook.kinds) == {"SubscriptionValidation", "Notification"}


def test_a_failing_webhook_is_retried_on_the_schedule(azurite: Azurite, grid: EventGridProxy) -> None:
    container = unique_name("eg")
    hook = Webhook(failures=2)
    grid.subscribe(hook.url, subject_begins_with=f"/blobServices/default/containers/{container}/blobs/uploads/")
    client(azurite, grid, container).upload_blob("uploads/a.jpg", b"x")
    assert len(hook.wait(1)) == 1
    assert hook.kinds.count("Notification") == 3, "two failures, then the delivery"
    deadline = time.monotonic() + 5  # the sender counts the delivery once the webhook's answer is back
    while grid.delivered < 1 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert grid.delivered == 1 and grid.failed_deliveries == 0


def test_a_webhook_that_fails_the_handshake_is_not_subscribed(grid: EventGridProxy) -> None:
    with pytest.raises(RuntimeError, match="could not validate"):
        grid.subscribe(Webhook(validates=False).url, subject_begins_with="/", timeout=0.5)
    assert grid.subscriptions == []


def test_only_successful_commits_are_events() -> None:
    put = {"x-ms-blob-type": "BlockBlob"}
    assert commit_api("PUT", {}, put, 201) == "PutBlob"
    assert commit_api("PUT", {}, put, 412) is None, "a failed conditional write raises nothing"
    assert commit_api("PUT", {"comp": "block", "blockid": "x"}, {}, 201) is None, "a staged block is not a blob"
    assert commit_api("PUT", {"comp": "blocklist"}, {}, 201) == "PutBlockList"
    assert commit_api("PUT", {"comp": "metadata"}, {}, 200) is None
    assert commit_api("PUT", {}, {"x-ms-copy-source": "u"}, 202) == "CopyBlob"
    assert commit_api("PUT", {"restype": "container"}, {}, 201) is None
    assert commit_api("GET", {}, put, 200) is None


def test_a_request_cut_off_mid_body_never_reaches_azurite(azurite: Azurite, grid: EventGridProxy) -> None:
    """A worker killed while it uploads: the proxy forwards nothing of a body that did not all arrive."""
    import socket

    container = unique_name("eg")
    blobs = client(azurite, grid, container)
    with socket.create_connection(("127.0.0.1", grid.port)) as raw:
        raw.sendall(
            f"PUT /devstoreaccount1/{container}/results/cut.jpg HTTP/1.1\r\nHost: x\r\n"
            "x-ms-blob-type: BlockBlob\r\nx-ms-version: 2021-12-02\r\nContent-Length: 1000\r\n\r\n".encode()
            + b"only part of it"
        )
    time.sleep(0.5)
    assert [b.name for b in blobs.list_blobs()] == []


def test_head_answers_keep_the_blob_size(azurite: Azurite, grid: EventGridProxy) -> None:
    """A HEAD through the proxy says the blob's size (found by the crash test: it read 0)."""
    blobs = client(azurite, grid, unique_name("eg"))
    blobs.upload_blob("results/r.jpg", b"x" * 1234)
    assert blobs.get_blob_client("results/r.jpg").get_blob_properties().size == 1234
