"""The TaskQueue adapters against Azurite and Google's Pub/Sub emulator."""

from __future__ import annotations

import base64
import json
import time
from typing import Any

import pytest
from azure.storage.queue import QueueClient, TextBase64DecodePolicy, TextBase64EncodePolicy
from google.cloud import pubsub_v1

from core.clouds.azure_queue import AzureQueueTaskQueue, decode
from core.clouds.pubsub import PubSubTaskQueue
from core.errors import BadRequest, ConfigError, NotFound
from devstack.emulators import Azurite, FakeGcs, PubSubEmulator
from tests.contracts.queues import Received, TaskQueueContract
from tests.helper import unique_name

pytestmark = pytest.mark.emulator


# Azure Storage Queues ----------------------------------------------------------------------------


def plain_client(azurite: Azurite, name: str) -> QueueClient:
    """A client with no encoding policy: it sees exactly what is on the wire."""
    return QueueClient.from_connection_string(azurite.connection_string, name)


def test_azure_messages_are_base64_json_as_the_functions_host_expects(azure_env: Azurite) -> None:
    name = unique_name("q")
    queue = AzureQueueTaskQueue(name)  # creates the queue on first send
    queue.send({"job_id": "abc", "name": "ünï #?%"})
    (raw,) = plain_client(azure_env, name).receive_messages()
    assert json.loads(base64.b64decode(raw.content)) == {"job_id": "abc", "name": "ünï #?%"}


def test_azure_reads_what_the_host_writes(azure_env: Azurite) -> None:
    # The host writes poison messages base64-encoded, as text.
    name = unique_name("q-poison")
    host_side = QueueClient.from_connection_string(
        azure_env.connection_string,
        name,
        message_encode_policy=TextBase64EncodePolicy(),
        message_decode_policy=TextBase64DecodePolicy(),
    )
    host_side.create_queue()
    host_side.send_message(json.dumps({"job_id": "xyz"}))
    ours = AzureQueueTaskQueue(name)
    (message,) = ours.client.receive_messages()
    assert decode(message.content) == {"job_id": "xyz"}


def test_azure_refuses_messages_over_64_kib(azure_env: Azurite) -> None:
    queue = AzureQueueTaskQueue(unique_name("q"))
    with pytest.raises(BadRequest, match="64"):
        queue.send({"blob": "x" * 50_000})  # 50 KB of JSON is 66.7 KB in base64


def test_azure_without_credentials_names_the_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AZURE_STORAGE_CONNECTION_STRING", raising=False)
    monkeypatch.delenv("AZURE_STORAGE_ACCOUNT_URL", raising=False)
    with pytest.raises(ConfigError, match="AZURE_STORAGE_CONNECTION_STRING"):
        AzureQueueTaskQueue("q").send({"job_id": "x"})


# Pub/Sub -----------------------------------------------------------------------------------------


def make_topic(project: str = "local") -> tuple[str, str]:
    publisher, subscriber = pubsub_v1.PublisherClient(), pubsub_v1.SubscriberClient()
    topic = publisher.topic_path(project, unique_name("topic"))
    subscription = subscriber.subscription_path(project, unique_name("sub"))
    publisher.create_topic(name=topic)
    subscriber.create_subscription(name=subscription, topic=topic)
    return topic, subscription


def pull(subscription: str, want: int = 1, timeout: float = 20.0) -> list[pubsub_v1.types.ReceivedMessage]:
    subscriber = pubsub_v1.SubscriberClient()
    got: list[pubsub_v1.types.ReceivedMessage] = []
    deadline = time.monotonic() + timeout
    while len(got) < want and time.monotonic() < deadline:
        response = subscriber.pull(subscription=subscription, max_messages=10, timeout=5)
        got += response.received_messages
        if response.received_messages:
            subscriber.acknowledge(subscription=subscription, ack_ids=[m.ack_id for m in response.received_messages])
    return got


@pytest.mark.pubsub
def test_pubsub_publishes_json(pubsub_env: PubSubEmulator) -> None:
    topic, subscription = make_topic()
    message_id = PubSubTaskQueue(topic.rsplit("/", 1)[-1]).send({"job_id": "abc"})
    (received,) = pull(subscription)
    assert received.message.message_id == message_id
    assert json.loads(received.message.data) == {"job_id": "abc"}


@pytest.mark.pubsub
def test_pubsub_missing_topic_is_not_found(pubsub_env: PubSubEmulator) -> None:
    with pytest.raises(NotFound, match="topics/absent"):
        PubSubTaskQueue("absent").send({"job_id": "abc"})


def test_pubsub_without_a_project_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GOOGLE_CLOUD_PROJECT", raising=False)
    with pytest.raises(ConfigError, match="GOOGLE_CLOUD_PROJECT"):
        PubSubTaskQueue("jobs")


@pytest.mark.pubsub
def test_fake_gcs_notifies_pubsub_on_finalize(pubsub_env: PubSubEmulator, monkeypatch: pytest.MonkeyPatch) -> None:
    """The local GCP chain's first link: an upload becomes an OBJECT_FINALIZE message."""
    from core.clouds.gcs import GcsObjectStore

    topic, subscription = make_topic()
    with FakeGcs(pubsub_project="local", pubsub_topic=topic.rsplit("/", 1)[-1]) as gcs:
        monkeypatch.setenv("STORAGE_EMULATOR_HOST", gcs.url)
        store = GcsObjectStore(unique_name())
        store.create_bucket()
        store.put("uploads/odd name #1.jpg", b"bytes", content_type="image/jpeg")
        messages = pull(subscription)
    assert messages, "fake-gcs-server sent no notification"
    attributes = messages[0].message.attributes
    assert attributes["eventType"] == "OBJECT_FINALIZE"
    assert attributes["objectId"] == "uploads/odd name #1.jpg"
    assert attributes["bucketId"] == store.bucket_name


# The TaskQueue contract on both -------------------------------------------------------------------


class TestAzureQueueTaskQueue(TaskQueueContract):
    @pytest.fixture
    def queue(self, azure_env: Azurite) -> AzureQueueTaskQueue:
        return AzureQueueTaskQueue(unique_name("q"))

    @pytest.fixture
    def received(self, queue: AzureQueueTaskQueue) -> Received:
        def take() -> list[Any]:
            messages = queue.receive(max_messages=32, visibility_timeout=30)
            for message in messages:
                queue.delete(message)
            return [message.payload for message in messages]

        return take


@pytest.mark.pubsub
class TestPubSubTaskQueue(TaskQueueContract):
    @pytest.fixture
    def subscription(self, pubsub_env: PubSubEmulator) -> tuple[str, str]:
        return make_topic()

    @pytest.fixture
    def queue(self, subscription: tuple[str, str]) -> PubSubTaskQueue:
        return PubSubTaskQueue(subscription[0].rsplit("/", 1)[-1])

    @pytest.fixture
    def received(self, subscription: tuple[str, str]) -> Received:
        def take() -> list[Any]:
            return [json.loads(m.message.data) for m in pull(subscription[1], want=1, timeout=1)]

        return take
