"""Which cloud processes an upload during a live migration (core.pipeline, docs/migration.md), on in-memory stores.

The source cloud takes uploads written before its freeze marker; the target those written after it,
which the copy tags. Each held store journals what it leaves for the other side, and the switch
(target) or the abort (source) accepts that journal. So each upload is processed exactly once.
"""

from __future__ import annotations

import json
import time
from datetime import timedelta
from typing import Any

import pytest

from core import pipeline
from core.errors import Frozen
from core.jobs import Status
from core.memory import InMemoryObjectStore, InMemoryTaskQueue
from core.pipeline import DEFERRED_KEY, DEFERRED_PREFIX, MIGRATED_KEY, REPLICA_KEY, SWITCHED_KEY, Services
from migrate.cutover import freeze
from tests.helper import encode, hopper

JPEG = encode(hopper(), "JPEG")


def source() -> Services:
    return Services.over(InMemoryObjectStore(), InMemoryTaskQueue())


def target() -> Services:
    services = Services.over(InMemoryObjectStore(), InMemoryTaskQueue())
    services.hold_key = REPLICA_KEY
    return services


def journal(services: Services) -> list[str]:
    return [o.key[len(DEFERRED_PREFIX) :] for o in services.store.list(DEFERRED_PREFIX)]


def test_the_source_processes_what_was_written_before_its_freeze_even_when_the_event_comes_later() -> None:
    gcp = source()
    before = gcp.store.put("uploads/before.jpg", JPEG, content_type="image/jpeg")
    time.sleep(0.002)
    marker = freeze(gcp.store)
    assert freeze(gcp.store).version == marker.version, "freezing again keeps the first marker and its time"
    after = gcp.store.put("uploads/after.jpg", JPEG, content_type="image/jpeg")
    job = pipeline.accept_upload(gcp, before.key, created=before.updated)  # a late event
    assert job is not None and job.status is Status.PENDING
    assert pipeline.accept_upload(gcp, after.key, created=after.updated) is None
    assert journal(gcp) == ["uploads%2Fafter.jpg"]
    with pytest.raises(Frozen):
        pipeline.submit_upload(gcp, JPEG, filename="new.jpg")
    # abort: unfreeze, then the journal is accepted here after all
    gcp.store.delete(pipeline.FREEZE_KEY)
    (accepted,) = pipeline.accept_deferred(gcp)
    assert accepted.source == after.key and journal(gcp) == []


def test_the_target_starts_nothing_while_a_replica_and_takes_its_own_uploads_at_the_switch() -> None:
    azure = target()
    azure.store.put(REPLICA_KEY, b'{"reason": "replica of gs://b"}')
    freeze_time = "2026-11-28T02:00:00+00:00"
    copied = azure.store.put("uploads/old.jpg", JPEG, content_type="image/jpeg", metadata={MIGRATED_KEY: "1"})
    left = azure.store.put("uploads/new.jpg", JPEG, content_type="image/jpeg",
                           metadata={MIGRATED_KEY: "2", DEFERRED_KEY: freeze_time})  # fmt: skip
    assert pipeline.accept_upload(azure, copied.key) is None
    assert pipeline.accept_upload(azure, left.key) is None
    assert journal(azure) == ["uploads%2Fnew.jpg"], "only the target's own upload is journalled"
    assert azure.queue.drain() == [] and list(azure.store.list("jobs/")) == []  # type: ignore[attr-defined]
    with pytest.raises(Frozen, match="replica"):
        pipeline.submit_upload(azure, JPEG, filename="x.jpg")
    # the switch: record which freeze it ends, lift the marker, accept the journal
    azure.store.put(SWITCHED_KEY, json.dumps({"freeze": freeze_time}).encode())
    azure.store.delete(REPLICA_KEY)
    (job,) = pipeline.accept_deferred(azure)
    assert job.source == left.key and len(azure.queue.drain()) == 1  # type: ignore[attr-defined]
    assert pipeline.accept_upload(azure, copied.key) is None, "the source's upload stays the source's"
    native = azure.store.put("uploads/native.jpg", JPEG, content_type="image/jpeg")
    assert pipeline.accept_upload(azure, native.key) is not None


def test_a_tag_left_by_an_aborted_cutover_does_not_make_the_target_process_it() -> None:
    azure = target()
    azure.store.put(SWITCHED_KEY, json.dumps({"freeze": "2026-11-28T03:00:00+00:00"}).encode())
    stale = azure.store.put("uploads/a.jpg", JPEG, content_type="image/jpeg",
                            metadata={MIGRATED_KEY: "1", DEFERRED_KEY: "2026-11-28T02:00:00+00:00"})  # fmt: skip
    assert pipeline.accept_upload(azure, stale.key) is None


class LiftedWhileJournalling(InMemoryObjectStore):
    """A store whose hold is lifted (a switch or abort) right as an upload is journalled."""

    def __init__(self, marker: str) -> None:
        super().__init__()
        self.marker = marker

    def put(self, key: str, data: bytes, **kwargs: Any) -> Any:
        info = super().put(key, data, **kwargs)
        if key.startswith(DEFERRED_PREFIX):
            self.delete(self.marker)
        return info


def test_an_upload_journalled_as_the_hold_is_lifted_is_accepted_by_its_event() -> None:
    gcp = Services.over(LiftedWhileJournalling(pipeline.FREEZE_KEY), InMemoryTaskQueue())
    freeze(gcp.store)
    late = gcp.store.put("uploads/late.jpg", JPEG, content_type="image/jpeg")
    job = pipeline.accept_upload(gcp, late.key, created=late.updated + timedelta(seconds=1))
    assert job is not None, "the look after the journal found the marker gone: the event takes it"


class HeldWhileWritten(InMemoryObjectStore):
    """A store whose hold marker lands just as an upload is written: after the API's check, before its write."""

    def __init__(self, hold_key: str) -> None:
        super().__init__()
        self.hold_key = hold_key

    def put(self, key: str, data: bytes, **kwargs: Any) -> Any:
        if key.startswith("uploads/") and not list(self.list(self.hold_key)):
            super().put(self.hold_key, b"{}")
            time.sleep(0.002)
        return super().put(key, data, **kwargs)


@pytest.mark.parametrize("hold_key", [pipeline.FREEZE_KEY, REPLICA_KEY], ids=["freeze", "rollback hold"])
def test_an_api_upload_that_the_hold_overtakes_is_refused_and_leaves_no_record_waiting(hold_key: str) -> None:
    """Its storage event would leave it to the other side and send no message: a record made anyway would stay
    PENDING for ever (a rollback waited for one in vain). So it is refused (503) and taken back, as the check
    before the write would have refused it."""
    services = Services.over(HeldWhileWritten(hold_key), InMemoryTaskQueue())
    services.hold_key = hold_key
    with pytest.raises(Frozen, match="upload it again"):
        pipeline.submit_upload(services, JPEG, filename="late.jpg")
    assert list(services.store.list("uploads/")) == [] and list(services.store.list("jobs/")) == []
    assert services.queue.drain() == []  # type: ignore[attr-defined]
