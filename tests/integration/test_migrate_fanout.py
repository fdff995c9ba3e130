"""The queue-fanned migration on the emulators: plan, the Azure batch function, status, and the pipeline."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import logging

import pytest
from azure.functions.queue import QueueMessage

from core.clouds.azure_blob import AzureBlobObjectStore
from core.clouds.azure_destination import AzureBlobDestination
from core.clouds.azure_queue import AzureQueueTaskQueue, Received
from core.clouds.gcs import GcsObjectStore
from core.clouds.gcs_source import GcsSource
from core.jobs import Status
from core.memory import InMemoryTaskQueue
from core.pipeline import Services, accept_upload, process_job
from functions_azure import migration
from migrate.cli import main
from migrate.fanout import BATCH_QUEUE
from migrate.runs import status
from migrate.verify import run_verify
from tests.helper import encode, hopper, replicating_barriers
from tests.integration.test_migrate import corpus

pytestmark = pytest.mark.emulator


def drain(run_id: str) -> list[int]:
    """Deliver the batch queue to the real queue-trigger handler until it is empty; the batch numbers, in order."""
    queue = AzureQueueTaskQueue(BATCH_QUEUE)
    seen: list[int] = []
    for _ in range(100):
        messages = queue.receive(max_messages=8, visibility_timeout=60)
        if not messages:
            break
        for message in messages:
            payload = message.payload
            migration.migrate_batch(QueueMessage(id=message.id, body=message.body, dequeue_count=1))
            queue.delete(message)
            if payload.get("run_id") == run_id:
                seen.append(payload["batch"])
    return seen


def plan(bucket: str, container: str, capsys: pytest.CaptureFixture[str], *extra: str) -> str:
    assert main(["plan", f"gs://{bucket}", f"az://{container}", "--json", *extra]) == 0
    return str(json.loads(capsys.readouterr().out.strip().splitlines()[-1])["run_id"])


def test_plan_fan_out_status_and_verify(bucket: str, container: str, capsys: pytest.CaptureFixture[str]) -> None:
    files = corpus(bucket)
    run_id = plan(bucket, container, capsys, "--batch-size", "2")
    order = drain(run_id)
    records = AzureBlobObjectStore(container)
    found = status(records, run_id)
    assert found["state"] == "done", found
    assert found["batches_done"] == found["batches"] == len(set(order))
    assert found["copied"] == len(files) - 1 and found["failed"] == 0  # the folder marker is skipped
    assert run_verify(GcsSource(bucket), AzureBlobDestination(container)).clean
    # uploads/ batches were held back until every earlier batch was done
    run = json.loads(records.get(f"_migrations/{run_id}/run.json").data)
    held = set(run["held_batches"])
    assert held and all(order.index(h) > order.index(e) for h in held for e in set(order) - held)
    assert main(["status", run_id, "--container", container]) == 0


def test_a_big_object_goes_in_parts_and_a_capped_run_keeps_to_its_lanes(
    bucket: str, container: str, capsys: pytest.CaptureFixture[str]
) -> None:
    files = corpus(bucket)
    big = bytes(range(251)) * 12_000  # 3,012,000 bytes: 12 blocks of 256 KiB, in parts of 1 MiB (4 blocks)
    GcsObjectStore(bucket).put("media/big.bin", big, content_type="video/mp4")
    run_id = plan(bucket, container, capsys, "--batch-size", "3", "--max-batches", "2",
                  "--part-bytes", str(2**20), "--block-size", str(2**18))  # fmt: skip
    queue = AzureQueueTaskQueue(BATCH_QUEUE)
    widest = 0
    for _ in range(100):
        messages = [m for m in queue.receive(max_messages=32, visibility_timeout=60) if m.payload["run_id"] == run_id]
        if not messages:
            break
        widest = max(widest, len(messages))
        for message in messages:
            migration.migrate_batch(QueueMessage(id=message.id, body=message.body, dequeue_count=1))
            queue.delete(message)
    assert widest == 2, "at most --max-batches of the run on the queue at once"
    found = status(AzureBlobObjectStore(container), run_id)
    assert found["state"] == "done", found
    assert found["copied"] == len(files) and found["objects"] == len(files) + 1  # the folder marker is skipped
    dest = AzureBlobDestination(container)
    blob = dest.container.get_blob_client("media/big.bin")
    committed, _ = blob.get_block_list("committed")
    assert len(committed) == 12 and blob.download_blob().readall() == big
    assert run_verify(GcsSource(bucket), dest, download=True).clean


def one_batch(
    bucket: str, container: str, capsys: pytest.CaptureFixture[str]
) -> tuple[str, AzureQueueTaskQueue, Received]:
    """A run of one object: its id, the batch queue, and the batch's message taken from it."""
    GcsObjectStore(bucket).put("a.txt", b"a")
    run_id = plan(bucket, container, capsys)
    queue = AzureQueueTaskQueue(BATCH_QUEUE)
    (message,) = [m for m in queue.receive(max_messages=32) if m.payload["run_id"] == run_id]
    return run_id, queue, message


def test_a_redelivered_batch_copies_nothing_twice(
    bucket: str, container: str, capsys: pytest.CaptureFixture[str]
) -> None:
    run_id, queue, message = one_batch(bucket, container, capsys)
    for _ in range(2):
        migration.migrate_batch(QueueMessage(id=message.id, body=message.body, dequeue_count=1))
    queue.delete(message)
    state = json.loads(AzureBlobObjectStore(container).get(f"_migrations/{run_id}/batches/1.json").data)
    assert (state["copied"], state["skipped"]) == (0, 1)  # the second delivery found the blob current


def test_a_poisoned_batch_fails_the_run(bucket: str, container: str, capsys: pytest.CaptureFixture[str]) -> None:
    run_id, queue, message = one_batch(bucket, container, capsys)
    queue.delete(message)
    migration.migrate_batch_poison(QueueMessage(id=message.id, body=message.body, dequeue_count=1))
    found = status(AzureBlobObjectStore(container), run_id)
    assert (found["state"], found["batches_failed"]) == ("failed", 1)
    assert main(["status", run_id, "--container", container]) == 1


def test_a_dead_lettered_batch_on_gcp_fails_the_run(
    bucket: str, container: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from functions_gcp.migration import migrate_batch_dead_letter
    from tests.integration.test_gcp_functions import pubsub_event

    run_id, queue, message = one_batch(bucket, container, capsys)
    queue.delete(message)
    # What Pub/Sub forwards to migrate-batches-dead: the original message, with its delivery count.
    migrate_batch_dead_letter(pubsub_event(message.payload, {"CloudPubSubDeadLetterSourceDeliveryCount": "5"}))
    found = status(AzureBlobObjectStore(container), run_id)
    assert (found["state"], found["batches_failed"]) == ("failed", 1)
    record = f"_migrations/{run_id}/batches/{message.payload['batch']}.json"
    batch = json.loads(AzureBlobObjectStore(container).get(record).data)
    assert batch["errors"] == [{"key": "*", "error": "gave up after 5 attempts"}]


def test_a_late_poison_message_does_not_undo_a_finished_batch(
    bucket: str, container: str, capsys: pytest.CaptureFixture[str]
) -> None:
    run_id, queue, message = one_batch(bucket, container, capsys)
    migration.migrate_batch(QueueMessage(id=message.id, body=message.body, dequeue_count=1))
    queue.delete(message)
    migration.migrate_batch_poison(QueueMessage(id=message.id, body=message.body, dequeue_count=1))
    found = status(AzureBlobObjectStore(container), run_id)
    assert (found["state"], found["batches_done"], found["copied"]) == ("done", 1, 1)


def test_status_of_an_unknown_run_exits_2(container: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["status", "20260101T000000Z-000000", "--container", container]) == 2
    assert "no migration run" in capsys.readouterr().err


def test_migrated_uploads_are_not_processed_again_on_azure(
    bucket: str, container: str, capsys: pytest.CaptureFixture[str]
) -> None:
    gcp = Services.over(GcsObjectStore(bucket), InMemoryTaskQueue())
    data = encode(hopper(), "JPEG")
    gcp.store.put("uploads/cat.jpg", data, content_type="image/jpeg")
    job = accept_upload(gcp, "uploads/cat.jpg")
    assert job is not None
    done = process_job(gcp, job.id)
    assert done.status is Status.DONE
    assert main(["copy", f"gs://{bucket}", f"az://{container}"]) == 0
    azure = Services.over(AzureBlobObjectStore(container), InMemoryTaskQueue())
    # Azure's trigger fires for the migrated upload: it is GCP's (copied, untagged), so nothing starts,
    # and Azure serves GCP's DONE record, copied with it.
    assert accept_upload(azure, "uploads/cat.jpg") is None
    assert azure.queue.drain() == []  # type: ignore[attr-defined]
    again = azure.jobs.get(job.id)
    assert again.status is Status.DONE
    assert azure.store.get(again.result or "").info.md5 == gcp.store.get(done.result or "").info.md5
    assert hashlib.md5(azure.store.get("uploads/cat.jpg").data).hexdigest() == hashlib.md5(data).hexdigest()


def test_cutover_and_abort_need_a_live_run_and_say_so(
    bucket: str, container: str, capsys: pytest.CaptureFixture[str]
) -> None:
    GcsObjectStore(bucket).put("data/a.txt", b"a")
    assert main(["copy", f"gs://{bucket}", f"az://{container}"]) == 0
    capsys.readouterr()
    assert main(["cutover", f"gs://{bucket}", f"az://{container}"]) == 2
    assert "no live run replicates" in capsys.readouterr().err
    assert main(["abort", f"gs://{bucket}", f"az://{container}"]) == 2
    assert "is not a replica" in capsys.readouterr().err
    assert main(["rollback", f"gs://{bucket}", f"az://{container}"]) == 2
    assert "no live run replicates" in capsys.readouterr().err
    assert main(["finish", f"gs://{bucket}", f"az://{container}"]) == 2
    assert "nothing to finish" in capsys.readouterr().err
    assert "_cutover/frozen.json" not in {i.key for i in GcsObjectStore(bucket).list("_cutover/")}, "nothing frozen"


def test_plan_live_makes_a_replica_refuses_a_second_live_run_and_cutover_checks_the_run(
    bucket: str, container: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from core.pipeline import REPLICA_KEY
    from migrate import live

    GcsObjectStore(bucket).put("data/a.txt", b"a")
    with replicating(bucket, container):  # the go-live probe must reach a replicate function
        run_id = plan(bucket, container, capsys, "--live", "--feed", "manual", "--probe-timeout", "20")
    assert AzureBlobObjectStore(container).head(REPLICA_KEY)
    found = live.live_run(GcsObjectStore(bucket))
    assert found is not None and (found.run_id, found.container, found.deletes) == (run_id, container, "report")
    assert found.feed == "", "a feed managed elsewhere: finish leaves it alone"
    assert main(["plan", f"gs://{bucket}", f"az://{container}", "--live"]) == 2
    assert f"already replicates for run {run_id}" in capsys.readouterr().err
    assert main(["cutover", f"gs://{bucket}", f"az://{container}", "--run", "20990101T000000Z-000000"]) == 2
    assert f"is not the live run of gs://{bucket}" in capsys.readouterr().err
    assert main(["rollback", f"gs://{bucket}", f"az://{container}"]) == 2
    assert "has not switched: nothing to roll back" in capsys.readouterr().err
    assert AzureBlobObjectStore(container).head(REPLICA_KEY), "still a replica"
    assert status(AzureBlobObjectStore(container), run_id)["replication"]["pending"] == 0


def replicating(bucket: str, container: str) -> contextlib.AbstractContextManager[None]:
    """What ``migrate_replicate`` does with the probe of ``plan --live``, from a thread (no function runs here)."""
    store = GcsObjectStore(bucket)
    return replicating_barriers(
        store, GcsSource(bucket), AzureBlobDestination(container), AzureBlobObjectStore(container)
    )


def test_plan_live_whose_probe_never_arrives_starts_nothing(
    bucket: str, container: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from core.pipeline import REPLICA_KEY
    from migrate import live

    code = main(["plan", f"gs://{bucket}", f"az://{container}", "--live", "--feed", "manual", "--probe-timeout", "1"])
    assert code == 1 and "delivered nothing in 1 s" in capsys.readouterr().err
    assert live.live_run(GcsObjectStore(bucket)) is None
    assert REPLICA_KEY not in {i.key for i in AzureBlobObjectStore(container).list("_cutover/")}


@pytest.mark.parametrize("body", [b"null", b"[1, 2]", b'"text"', b"{}", b"not json"])
def test_batch_messages_that_are_no_batch_are_dropped_on_both_clouds(
    body: bytes, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Acknowledged and logged, never raised: raising would retry them and then fail them again as poison."""
    from cloudevents.http import CloudEvent

    from functions_gcp.events import PUBLISHED
    from functions_gcp.migration import migrate_batch as gcp_migrate_batch
    from functions_gcp.migration import migrate_batch_dead_letter

    monkeypatch.setenv("GOOGLE_CLOUD_PROJECT", "local")  # the GCP function's queue client needs one
    migration.migrate_batch(QueueMessage(id="m", body=body, dequeue_count=1))
    migration.migrate_batch_poison(QueueMessage(id="m", body=body, dequeue_count=5))
    event = CloudEvent(
        {"type": PUBLISHED, "source": "//pubsub.googleapis.com/projects/local/topics/migrate-batches"},
        {"message": {"data": base64.b64encode(body).decode(), "messageId": "1"}, "subscription": "s"},
    )
    gcp_migrate_batch(event)
    migrate_batch_dead_letter(event)
    # Each of the four handlers logged its drop, naming the message, and none raised (which would retry it).
    drops = [r.getMessage() for r in caplog.records if r.name == "migrate.worker" and r.levelno == logging.ERROR]
    expected = [
        "dropped migration message m: ",
        "dropped a malformed migration dead letter m: ",
        f"dropped migration message {event['id']}: ",
        f"dropped a malformed migration dead letter {event['id']}: ",
    ]
    assert len(drops) == 4 and all(line.startswith(prefix) for line, prefix in zip(drops, expected, strict=True)), drops
    assert all("names no container" in line for line in drops)
