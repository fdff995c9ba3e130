"""The replication feed (``core.ports.ReplicationFeed``): what delivers a bucket's changes to ``migrate_replicate``.

- Deployed: a bucket notification to the ``migrate-replication`` topic, all event types, JSON payload; the topic
  and its push subscription to ``migrate_replicate`` are deployed once (``deploy/gcp.py``), the notification is
  made by ``plan --live`` and removed by ``finish``. Making one needs ``storage.buckets.update`` on the bucket
  (Storage Admin), which the operator holds and the functions do not.
- With ``STORAGE_EMULATOR_HOST`` (fake-gcs-server publishes every change to one topic, and has no notification
  API): a pull subscription ``migrate-replicate`` on that topic, which the local push forwarder picks up when it
  appears (``devstack.pubsub_push``).

Either way, with no live run nothing reaches ``migrate_replicate``: an upload costs no replication invocation.
"""

from __future__ import annotations

import contextlib
import os
from typing import Any

from google.api_core import exceptions as gexc

from core import names
from core.clouds import pubsub
from core.clouds.gcs import make_client, translate_errors
from core.errors import Forbidden

SUBSCRIPTION = "migrate-replicate"
"""Locally: the subscription on the emulator's notification topic that feeds ``migrate_replicate``."""
MAX_DELIVERY_ATTEMPTS = 5


def replication_feed(bucket: str) -> Any:
    """The feed of this bucket: the emulator's subscription under ``STORAGE_EMULATOR_HOST``, else a notification."""
    return EmulatorFeed() if os.environ.get("STORAGE_EMULATOR_HOST") else GcsNotificationFeed(bucket)


class GcsNotificationFeed:
    """A notification of the bucket to ``migrate-replication`` (``OBJECT_FINALIZE`` and ``OBJECT_DELETE``)."""

    def __init__(self, bucket: str, project: str | None = None) -> None:
        self.bucket_name = bucket
        self.project = project

    def _ours(self) -> list[Any]:
        bucket = make_client(self.project).bucket(self.bucket_name)
        with translate_errors(f"gs://{self.bucket_name} notifications"):
            return [n for n in bucket.list_notifications() if n.topic_name == names.REPLICATION]

    def open(self) -> bool:
        if self._ours():
            return False
        bucket = make_client(self.project).bucket(self.bucket_name)
        notification = bucket.notification(
            topic_name=names.REPLICATION,
            topic_project=pubsub.project_id(self.project),
            payload_format="JSON_API_V1",
            event_types=["OBJECT_FINALIZE", "OBJECT_DELETE"],
        )
        try:
            with translate_errors(f"gs://{self.bucket_name} notifications"):
                notification.create()
        except Forbidden as exc:
            raise Forbidden(
                f"making the replication notification of gs://{self.bucket_name} needs storage.buckets.update "
                f"(roles/storage.admin on the bucket), which this identity lacks: run `python -m migrate plan "
                f"gs://{self.bucket_name} az://CONTAINER --live` as the operator ({exc})"
            ) from exc
        return True

    def close(self) -> bool:
        found = self._ours()
        for notification in found:
            with contextlib.suppress(gexc.NotFound), translate_errors(f"gs://{self.bucket_name} notifications"):
                notification.delete()
        return bool(found)

    def is_open(self) -> bool:
        return bool(self._ours())


class EmulatorFeed:
    """Locally: the subscription ``migrate-replicate`` on the emulator's notification topic, with its dead letter."""

    def __init__(self, project: str | None = None) -> None:
        self.project = project or os.environ.get(pubsub.PROJECT_VAR) or "local"

    def open(self) -> bool:
        if self.is_open():
            return False
        pubsub.ensure_subscription(
            SUBSCRIPTION,
            names.NOTIFICATIONS_TOPIC,
            project=self.project,
            dead_letter_topic=names.REPLICATION_DEAD_LETTER_TOPIC,
            max_delivery_attempts=MAX_DELIVERY_ATTEMPTS,
        )
        return True

    def close(self) -> bool:
        from google.cloud import pubsub_v1

        try:
            pubsub_v1.SubscriberClient().delete_subscription(
                subscription=pubsub.subscription_path(SUBSCRIPTION, self.project)
            )
        except gexc.NotFound:
            return False
        return True

    def is_open(self) -> bool:
        return pubsub.subscription_exists(SUBSCRIPTION, self.project)
