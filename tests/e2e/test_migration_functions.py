"""The migration started over HTTP on either cloud, fanned out to that cloud's batch function."""

from __future__ import annotations

import contextlib
import json
import re
import time
import urllib.parse
from collections.abc import Iterator

import pytest

from core.clouds import pubsub
from core.clouds.azure_blob import AzureBlobObjectStore
from core.clouds.azure_destination import AzureBlobDestination
from core.clouds.gcs import GcsObjectStore
from core.clouds.gcs_source import GcsSource
from core.memory import InMemoryTaskQueue
from devstack.azure import AzureStack
from devstack.environment import environment
from devstack.gcp import BATCH_DEAD_LETTER_TOPIC, GcpStack
from devstack.stacks import both_clouds
from migrate import fanout
from migrate.verify import run_verify
from tests.helper import encode, hopper, http_json, require_pubsub_emulator, unique_name, wait_for_job

pytestmark = [pytest.mark.e2e, pytest.mark.emulator, pytest.mark.pubsub]


@pytest.fixture(scope="module")
def clouds() -> Iterator[tuple[GcpStack, AzureStack]]:
    require_pubsub_emulator("the GCP fan-out")
    with contextlib.ExitStack() as stack:
        # Each test migrates buckets and containers of its own: the allowlist admits them by their names' pattern.
        allowed = {"MIGRATE_SOURCES": "src-*", "MIGRATE_CONTAINERS": "dst-*"}
        gcp, azure = both_clouds(stack, bucket=unique_name("src"), container=unique_name("dst"), extra_env=allowed)
        with environment({**gcp.env(), **azure.env()}):
            yield gcp, azure


@pytest.mark.parametrize("cloud", ["gcp", "azure"])
def test_post_migrations_fans_out_and_reports_done(clouds: tuple[GcpStack, AzureStack], cloud: str) -> None:
    gcp, azure = clouds
    bucket, container = unique_name("src"), unique_name("dst")
    GcsObjectStore(bucket).create_bucket()
    AzureBlobDestination(container).create()
    for index in range(7):
        GcsObjectStore(bucket).put(f"data/{index}.txt", f"object {index}".encode(), content_type="text/plain")
    GcsObjectStore(bucket).put("uploads/u.txt", b"an upload")
    api = gcp.migrations_url if cloud == "gcp" else azure.api_url
    body = json.dumps({"source": f"gs://{bucket}", "dest": f"az://{container}", "batch_size": 3}).encode()
    status, run = http_json("POST", f"{api}/migrations", body, {"Content-Type": "application/json"})
    assert status == 202, run
    assert run["objects"] == 8 and run["batches"] == 4
    deadline, found = time.monotonic() + 60, None
    while time.monotonic() < deadline:
        status, found = http_json("GET", f"{api}/migrations/{run['run_id']}?container={urllib.parse.quote(container)}")
        assert status == 200, found
        if found["state"] != "running":
            break
        time.sleep(0.3)
    assert found is not None and found["state"] == "done", found
    assert found["copied"] == 8
    assert found["started_by"] == "unauthenticated"  # locally no auth applies; deployed, the platform's identity
    assert run_verify(GcsSource(bucket), AzureBlobDestination(container)).clean


@pytest.mark.parametrize("cloud", ["gcp", "azure"])
def test_bad_migration_requests(clouds: tuple[GcpStack, AzureStack], cloud: str) -> None:
    gcp, azure = clouds
    api = gcp.migrations_url if cloud == "gcp" else azure.api_url
    status, body = http_json("POST", f"{api}/migrations", b'{"source": "s3://x", "dest": "az://y"}')
    assert (status, body["error"]) == (400, "bad_request")
    status, body = http_json("GET", f"{api}/migrations/nope?container={unique_name('dst')}")
    assert (status, body["error"]) == (404, "not_found")
    # Outside the allowlist: 403 before any storage request, and nothing written.
    other = unique_name("other")
    AzureBlobDestination(other).create()
    refused = [
        ("/migrations", {"source": f"gs://{gcp.bucket}", "dest": f"az://{other}"}),
        ("/migrations/check", {"source": f"gs://{unique_name('other')}", "dest": f"az://{azure.container}"}),
    ]
    for path, body_sent in refused:
        status, body = http_json("POST", f"{api}{path}", json.dumps(body_sent).encode())
        assert (status, body["error"]) == (403, "not_allowed"), body
    status, body = http_json("GET", f"{api}/migrations?container={other}")
    assert (status, body["error"]) == (403, "not_allowed"), body
    assert list(AzureBlobObjectStore(other).list()) == []


@pytest.mark.parametrize("cloud", ["gcp", "azure"])
def test_post_migrations_check_proves_access_on_both_sides(clouds: tuple[GcpStack, AzureStack], cloud: str) -> None:
    gcp, azure = clouds
    bucket, container = unique_name("src"), unique_name("dst")
    GcsObjectStore(bucket).create_bucket()
    GcsObjectStore(bucket).put("data/one.txt", b"one", content_type="text/plain")
    AzureBlobDestination(container).create()
    api = gcp.migrations_url if cloud == "gcp" else azure.api_url
    body = json.dumps({"source": f"gs://{bucket}", "dest": f"az://{container}"}).encode()
    status, found = http_json("POST", f"{api}/migrations/check", body, {"Content-Type": "application/json"})
    assert (status, found) == (200, {"ok": True, "missing": []})
    assert not list(AzureBlobObjectStore(container).list("_migrations/")), "the probe blob is deleted"
    missing_bucket = json.dumps({"source": f"gs://{unique_name('src')}", "dest": f"az://{container}"}).encode()
    status, found = http_json("POST", f"{api}/migrations/check", missing_bucket)
    assert (status, found["error"]) == (404, "not_found")
    assert "no GCS bucket" in found["message"]
    status, found = http_json("POST", f"{api}/migrations/check", b'{"source": "gs://b", "dest": "s3://c"}')
    assert (status, found["error"]) == (400, "bad_request")


@pytest.mark.parametrize("method", ["GET", "POST", "PUT", "DELETE"])
@pytest.mark.parametrize("path", ["/migrations", "/migrations/", "/migrations/check", "/migrations/x", "/MIGRATIONS",
                                  "/migrations%2Fx", "/migrations%252Fx", "//migrations"])  # fmt: skip
def test_the_public_gcp_api_serves_no_migration_route(
    clouds: tuple[GcpStack, AzureStack], method: str, path: str
) -> None:
    """The control plane is the ``migrations`` function's alone, so that --public-api never opens it."""
    gcp, _ = clouds
    status, body = http_json(method, f"{gcp.api_url}{path}", b"{}" if method != "GET" else None)
    assert status in (404, 405), (status, body)
    assert "run_id" not in (body or {}) and "runs" not in (body or {})


def test_the_gcp_control_plane_serves_no_pipeline_route(clouds: tuple[GcpStack, AzureStack]) -> None:
    gcp, _ = clouds
    for method, path in [("GET", "/"), ("POST", "/jobs"), ("GET", "/jobs/" + "a" * 32)]:
        status, body = http_json(method, f"{gcp.migrations_url}{path}", b"x" if method == "POST" else None)
        assert (status, body["error"]) == (404, "not_found"), (method, path, body)


@pytest.mark.parametrize("cloud", ["gcp", "azure"])
def test_going_live_over_http_is_refused_up_front_and_azure_keeps_taking_uploads(
    clouds: tuple[GcpStack, AzureStack], cloud: str
) -> None:
    """Going live makes the bucket's replication notification, which only the operator may (storage.buckets.update):
    both clouds refuse it before writing anything, naming the command. Azure, were it to try, would also write the
    replica marker, fail on the bucket it may only read, and stay frozen."""
    from core.clouds.replication_feed import EmulatorFeed
    from migrate import live

    gcp, azure = clouds
    api = gcp.migrations_url if cloud == "gcp" else azure.api_url
    body = json.dumps({"source": f"gs://{gcp.bucket}", "dest": f"az://{azure.container}", "live": True}).encode()
    status, refused = http_json("POST", f"{api}/migrations", body, {"Content-Type": "application/json"})
    assert (status, refused["error"]) == (409, "conflict"), refused
    command = rf"`python -m migrate plan gs://{gcp.bucket}/? az://{azure.container}/? --live`"
    assert re.search(command, refused["message"]) and "storage.buckets.update" in refused["message"], refused
    assert not list(AzureBlobObjectStore(azure.container).list("_cutover/")), "no replica marker"
    assert not list(AzureBlobObjectStore(azure.container).list("_migrations/")), "no run"
    assert live.live_run(GcsObjectStore(gcp.bucket)) is None and not EmulatorFeed().is_open()
    status, job = http_json("POST", f"{azure.api_url}/jobs", encode(hopper(), "PNG"), {"Content-Type": "image/png"})
    assert status == 202, job
    assert wait_for_job(azure.api_url, job["id"])["status"] == "DONE"


def test_a_batch_dead_lettered_on_gcp_fails_the_run(clouds: tuple[GcpStack, AzureStack]) -> None:
    """The wiring of migrate-batches-dead: what Pub/Sub forwards after 5 failed deliveries reaches
    ``migrate_batch_dead_letter``, which records the batch failed (the dead-letter policy itself is
    exercised on the jobs topic by the GCP chain tests)."""
    gcp, _ = clouds
    bucket, container = unique_name("src"), unique_name("dst")
    GcsObjectStore(bucket).create_bucket()
    AzureBlobDestination(container).create()
    GcsObjectStore(bucket).put("data/a.txt", b"a")
    held = InMemoryTaskQueue()  # planned, but its batch is never delivered to a worker
    run = fanout.plan(GcsSource(bucket), AzureBlobObjectStore(container), held,
                      source_uri=f"gs://{bucket}", dest_uri=f"az://{container}")  # fmt: skip
    (message,) = held.messages
    with environment(gcp.env()):
        pubsub.publish_raw(BATCH_DEAD_LETTER_TOPIC, json.dumps(message).encode(),
                           {"CloudPubSubDeadLetterSourceDeliveryCount": "5"})  # fmt: skip
    url = f"{gcp.migrations_url}/migrations/{run.run_id}?container={urllib.parse.quote(container)}"
    deadline, found = time.monotonic() + 30, {}
    while time.monotonic() < deadline:
        _, found = http_json("GET", url)
        if found.get("state") != "running":
            break
        time.sleep(0.3)
    assert (found["state"], found["batches_failed"]) == ("failed", 1), found


def replicated(gcp: GcpStack) -> int:
    """Messages the local forwarder has posted to ``migrate_replicate`` so far."""
    assert gcp.push is not None
    return gcp.push.posted("/migrate-replicate")


def test_the_four_steps_run_over_http_as_queued_tasks_on_gcp_and_are_refused_on_azure(
    clouds: tuple[GcpStack, AzureStack], capsys: pytest.CaptureFixture[str]
) -> None:
    """A live run of the stacks' own bucket, made by ``plan --live`` (which makes the replication feed: nothing
    reached replication before it, nothing after ``finish``), stepped through cutover, rollback, abort and finish by
    ``POST /migrations/{run}/{step}``: each answers 202 with a Location, a task on the fan-out's
    queue runs it, and the run's ``steps`` shows its result. Last in this module: it leaves the container a replica."""
    from core.clouds.replication_feed import EmulatorFeed
    from migrate import live
    from migrate.cli import main

    gcp, azure = clouds
    bucket = GcsObjectStore(gcp.bucket)
    for index in range(5):
        bucket.put(f"data/step-{index}.txt", f"object {index}".encode(), content_type="text/plain")
    assert gcp.push is not None
    time.sleep(1)  # the notifications of those writes are delivered by now: none reaches replication
    assert replicated(gcp) == 0 and not EmulatorFeed().is_open()
    assert main(["plan", f"gs://{gcp.bucket}", f"az://{azure.container}", "--live", "--json"]) == 0
    run = {"run_id": json.loads(capsys.readouterr().out.strip().splitlines()[-1])["run_id"]}
    assert EmulatorFeed().is_open() and replicated(gcp) >= 1  # the probe, at least
    query = f"?container={urllib.parse.quote(azure.container)}"
    status_url = f"{gcp.migrations_url}/migrations/{run['run_id']}{query}"
    deadline = time.monotonic() + 60
    while http_json("GET", status_url)[1]["state"] == "running" and time.monotonic() < deadline:
        time.sleep(0.3)
    for step in ("cutover", "abort", "rollback", "finish"):  # Azure's identity may only read the bucket
        status, refused = http_json("POST", f"{azure.api_url}/migrations/{run['run_id']}/{step}{query}", b"{}")
        assert status == 409 and f"python -m migrate {step} gs://{gcp.bucket}" in refused["message"], refused

    def step(name: str, body: bytes = b"{}") -> dict[str, object]:
        url = f"{gcp.migrations_url}/migrations/{run['run_id']}/{name}{query}"
        status, queued = http_json("POST", url, body, {"Content-Type": "application/json"})
        assert status == 202 and queued["state"] == "queued", queued
        deadline = time.monotonic() + 150
        while time.monotonic() < deadline:
            found = http_json("GET", status_url)[1]["steps"].get(name, {})
            if found.get("state") in ("done", "refused", "failed"):
                return dict(found)
            time.sleep(0.3)
        raise AssertionError(f"the {name} did not end: {found}")

    cut = step("cutover", b'{"timeout": 60}')
    assert cut["state"] == "done" and cut["ok"] and cut["result"]["switch"], cut  # type: ignore[index]
    back = step("rollback")
    assert back["state"] == "done" and back["result"]["rolled_back"], back  # type: ignore[index]
    aborted = step("abort")
    assert aborted["state"] == "done" and aborted["result"]["aborted"], aborted  # type: ignore[index]
    finished = step("finish")
    assert finished["state"] == "done" and finished["result"]["after"] == "abort", finished  # type: ignore[index]
    assert live.live_run(bucket) is None  # replication has ended
    assert finished["result"]["feed_removed"] and not EmulatorFeed().is_open()  # type: ignore[index]
    time.sleep(1)  # the forwarder lets the deleted subscription go
    before = replicated(gcp)
    bucket.put("data/after-finish.txt", b"late", content_type="text/plain")
    time.sleep(1.5)
    assert replicated(gcp) == before, "a change after finish reached replication"
    late = step("rollback")
    assert late["state"] == "refused" and "finished" in str(late["error"]), late
