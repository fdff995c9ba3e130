"""migrate.rollback on the in-memory ports: after the switch, GCP takes the pipeline back and nothing is lost or
processed twice (docs/migration.md)."""

from __future__ import annotations

import hashlib
import threading
import time
from collections import Counter
from dataclasses import replace
from typing import Any

import pytest

from core import names
from core.errors import NotFound
from core.memory import InMemoryObjectStore, InMemoryTaskQueue
from core.pipeline import (
    DEFERRED_PREFIX,
    FREEZE_KEY,
    REPLICA_KEY,
    SWITCHED_KEY,
    Services,
    accept_upload,
    handle_job_message,
    submit_upload,
)
from core.ports import StoredObject
from migrate import live, rollback
from migrate.cutover import freeze
from tests.helper import encode, noise

RUN = live.Live("20261128T000000Z-rollbk", "c")


class Clouds:
    """Both clouds' services on fakes, with a record of which cloud rendered which image."""

    def __init__(self) -> None:
        self.rendered: Counter[tuple[str, str]] = Counter()
        self.names: dict[str, str] = {}
        self.gcp = self._services("gcp", FREEZE_KEY)
        self.azure = self._services("azure", REPLICA_KEY)

    def _services(self, cloud: str, hold: str) -> Services:
        services = Services.over(InMemoryObjectStore(), InMemoryTaskQueue())
        services.hold_key = hold
        render = services.render

        def counted(data: bytes) -> Any:
            self.rendered[(cloud, self.names[hashlib.md5(data).hexdigest()])] += 1
            return render(data)

        services.render = counted
        return services

    def image(self, name: str, seed: int) -> bytes:
        data = encode(noise((16 + seed, 16)), "JPEG")
        self.names[hashlib.md5(data).hexdigest()] = name
        return data

    def work(self, cloud: Services) -> int:
        """What the cloud's worker does with its queue: process every message sent so far."""
        messages = cloud.queue.drain()  # type: ignore[attr-defined]
        for message in messages:
            handle_job_message(cloud, message)
        return len(messages)

    def replicate(self, key: str) -> None:
        """What replication does with a GCS upload: copy it with its tags, then Azure's event."""
        found = self.gcp.store.get(key)
        metadata = {names.MIGRATED_KEY: found.info.version}
        frozen = self.gcp.store.head(FREEZE_KEY).updated
        assert frozen is not None and found.info.updated is not None
        if found.info.updated >= frozen:
            metadata[names.DEFERRED_KEY] = frozen.isoformat()
        self.azure.store.put(key, found.data, content_type="image/jpeg", metadata=metadata)
        accept_upload(self.azure, key)

    def gcs_upload(self, key: str, data: bytes) -> None:
        self.gcp.store.put(key, data, content_type="image/jpeg")
        accept_upload(self.gcp, key)  # GCP's trigger: frozen, so it journals the upload


def switched_clouds() -> Clouds:
    """GCP frozen, Azure switched: the state a cutover leaves."""
    clouds = Clouds()
    clouds.gcp.store.put(live.LIVE_KEY, b"{}")
    clouds.azure.store.put(REPLICA_KEY, b"{}")
    clouds.azure.store.put("uploads/old.jpg", b"x", metadata={names.MIGRATED_KEY: "7"})  # migrated, GCP's
    freeze(clouds.gcp.store)
    time.sleep(0.002)
    live.switch(clouds.azure, clouds.gcp.store, clouds.azure.store)
    time.sleep(0.002)
    return clouds


def test_a_rollback_under_uploads_processes_each_upload_once_and_loses_none() -> None:
    clouds = switched_clouds()
    azure, gcp = clouds.azure, clouds.gcp
    a = submit_upload(azure, clouds.image("a", 1), filename="a.jpg")  # processed on Azure before the rollback
    clouds.work(azure)
    clouds.gcs_upload("uploads/d.jpg", clouds.image("d", 4))  # a late write to the frozen bucket: Azure's
    clouds.replicate("uploads/d.jpg")
    clouds.work(azure)
    b = submit_upload(azure, clouds.image("b", 2), filename="b.jpg")  # queued on Azure, not processed yet
    azure.store.put("uploads/c.jpg", clouds.image("c", 3), content_type="image/jpeg")  # its event is late
    clouds.gcs_upload("uploads/e.jpg", clouds.image("e", 5))  # replicated only once Azure is held: GCP's

    def azure_side() -> None:  # the Azure worker, and what reaches Azure after the hold
        while not list(azure.store.list(REPLICA_KEY)):
            time.sleep(0.01)
        time.sleep(0.002)
        clouds.replicate("uploads/e.jpg")
        azure.store.put("uploads/f.jpg", clouds.image("f", 6), content_type="image/jpeg")  # written after the hold
        assert accept_upload(azure, "uploads/f.jpg") is None
        time.sleep(0.3)
        clouds.work(azure)
        accept_upload(azure, "uploads/c.jpg")  # c's late event: the same job the rollback accepted

    worker = threading.Thread(target=azure_side)
    worker.start()
    result = rollback.rollback(gcp, azure, RUN, timeout=10, grace=0.5)
    worker.join()
    assert result["rolled_back"] and result["azure_jobs_waited"] >= 2  # b, and c accepted by the rollback
    assert not result["failed"] and result["copied_back"] >= 10  # 4 uploads (a, b, c, f), their jobs and results
    assert "uploads/old.jpg" not in {i.key for i in gcp.store.list("uploads/")}, "a migrated blob is GCP's already"
    for info in gcp.store.list("uploads/"):  # the bucket's notifications of the copied-back uploads, late, twice
        accept_upload(gcp, info.key)
        accept_upload(gcp, info.key)
    clouds.work(gcp)
    for name in "abcdef":  # each upload processed exactly once, on one cloud or the other
        assert sum(n for (_, image), n in clouds.rendered.items() if image == name) == 1, (name, clouds.rendered)
    assert {image for (cloud, image) in clouds.rendered if cloud == "gcp"} == {"e", "f"}
    jobs = [gcp.jobs.get(j.id) for j in (a, b)]
    assert [j.status.value for j in jobs] == ["DONE", "DONE"] and all(gcp.store.head(j.result or "") for j in jobs)
    records = [gcp.jobs.get(job.id) for job in _jobs(gcp.store)]
    assert len(records) == 6 and {r.status.value for r in records} == {"DONE"}
    # Switched back: GCP takes uploads, Azure is a replica again with an empty journal.
    assert not list(gcp.store.list(FREEZE_KEY)) and list(azure.store.list(REPLICA_KEY))
    assert not list(azure.store.list(SWITCHED_KEY)) and not list(azure.store.list(DEFERRED_PREFIX))
    assert rollback.last(azure.store, RUN.run_id) == {**result}
    with pytest.raises(NotFound, match="never became the primary"):
        rollback.rollback(gcp, azure, RUN)


def _jobs(store: InMemoryObjectStore) -> list[Any]:
    from core.jobs import Job

    return [Job.from_json(store.get(i.key).data) for i in store.list("jobs/")]


class CorruptRead(InMemoryObjectStore):
    """A container whose next read of one blob returns changed bytes (a bad transfer)."""

    def __init__(self) -> None:
        super().__init__()
        self.corrupt: set[str] = set()

    def get(self, key: str, *, max_bytes: int | None = None) -> StoredObject:
        found = super().get(key, max_bytes=max_bytes)
        if key in self.corrupt:
            self.corrupt.discard(key)
            return replace(found, data=found.data[:-1] + b"!")
        return found


def test_a_copy_that_fails_its_proof_writes_nothing_and_a_second_run_finishes() -> None:
    clouds = switched_clouds()
    container = CorruptRead()
    for info in clouds.azure.store.list():
        found = clouds.azure.store.get(info.key)
        container.put(info.key, found.data, content_type=info.content_type, metadata=info.metadata)
    clouds.azure.store = container
    clouds.azure.jobs = Services.over(container, clouds.azure.queue).jobs
    job = submit_upload(clouds.azure, clouds.image("a", 1), filename="a.jpg")
    clouds.work(clouds.azure)
    container.corrupt.add(clouds.azure.jobs.get(job.id).result or "")
    first = rollback.rollback(clouds.gcp, clouds.azure, RUN, timeout=5, grace=0)
    assert not first["rolled_back"] and "Content-MD5" in first["failed"][0]["reason"]
    assert not list(clouds.gcp.store.list("uploads/")), "no upload goes back before its job record"
    assert list(clouds.gcp.store.list(FREEZE_KEY)) and list(container.list(SWITCHED_KEY)), "nothing switched back"
    second = rollback.rollback(clouds.gcp, clouds.azure, RUN, timeout=5, grace=0)
    assert second["rolled_back"] and second["skipped"] == 1 and second["copied_back"] == 2  # the job record was there
    assert clouds.gcp.jobs.get(job.id).status.value == "DONE"
    assert clouds.work(clouds.gcp) == 0, "the upload was processed on Azure: GCP sends no job for it"


def test_a_replica_processes_its_own_upload_written_before_the_hold_and_no_other() -> None:
    clouds = Clouds()
    azure = clouds.azure
    azure.store.put("uploads/own.jpg", clouds.image("own", 1), content_type="image/jpeg")
    azure.store.put("uploads/copied.jpg", clouds.image("copied", 2), content_type="image/jpeg",
                    metadata={names.MIGRATED_KEY: "3"})  # fmt: skip
    time.sleep(0.002)
    rollback.hold(azure.store, RUN.run_id)
    first = azure.store.head(REPLICA_KEY)
    time.sleep(0.002)
    azure.store.put("uploads/late.jpg", clouds.image("late", 3), content_type="image/jpeg")
    assert accept_upload(azure, "uploads/own.jpg") is not None
    assert accept_upload(azure, "uploads/copied.jpg") is None
    assert accept_upload(azure, "uploads/late.jpg") is None
    assert rollback.hold(azure.store, RUN.run_id) == first, "held once: its time never moves"


def test_replication_writes_over_a_blob_the_rollback_copied_back_and_keeps_any_other() -> None:
    from core.memory import InMemoryDestination, InMemorySource
    from core.ports import ObjectDetails
    from migrate import rules

    bucket, source, dest, records = (
        InMemoryObjectStore(),
        InMemorySource("adopt"),
        InMemoryDestination(),
        InMemoryObjectStore(),
    )
    dest.put(ObjectDetails("jobs/j.json", 4, md5=hashlib.md5(b"DONE").hexdigest()), b"DONE")  # copied back
    etag = dest.head("jobs/j.json").version
    source.add("jobs/j.json", b"DONE", metadata={names.RESTORED_KEY: str(etag)})
    assert live.replicate(live.Change("jobs/j.json"), bucket, source, dest, records, RUN) == "copied"
    assert dest.head("jobs/j.json").metadata.get(rules.GENERATION_KEY), "the blob now records its GCS generation"
    dest.put(ObjectDetails("jobs/k.json", 3), b"NEW")
    source.add("jobs/k.json", b"OLD", metadata={names.RESTORED_KEY: "another-etag"})
    assert live.replicate(live.Change("jobs/k.json"), bucket, source, dest, records, RUN) == "kept"
    assert b"".join(dest.read_chunks("jobs/k.json")) == b"NEW"


def test_a_job_azure_never_ends_stops_the_rollback_before_anything_is_copied_back() -> None:
    clouds = switched_clouds()
    job = submit_upload(clouds.azure, clouds.image("stuck", 1), filename="stuck.jpg")  # queued; no worker runs
    with pytest.raises(live.NotSettled, match=f"still running after 1 s.*{job.id}"):
        rollback.rollback(clouds.gcp, clouds.azure, RUN, timeout=1, grace=0)
    assert not list(clouds.gcp.store.list("jobs/")) and list(clouds.gcp.store.list(FREEZE_KEY))
    clouds.work(clouds.azure)  # the worker comes back: a second run finishes
    assert rollback.rollback(clouds.gcp, clouds.azure, RUN, timeout=5, grace=0)["rolled_back"]
    assert clouds.gcp.jobs.get(job.id).status.value == "DONE" and clouds.work(clouds.gcp) == 0
