"""The migration started over HTTP on either cloud, fanned out to that cloud's batch function."""

from __future__ import annotations

import contextlib
import json
import time
import urllib.parse
from collections.abc import Iterator

import pytest

from core.clouds.azure_blob import AzureBlobDestination
from core.clouds.gcs import GcsObjectStore, GcsSource
from devstack.azure import AzureStack
from devstack.environment import environment
from devstack.gcp import GcpStack
from devstack.stacks import both_clouds
from migrate.verify import run_verify
from tests.conftest import require_pubsub_emulator, unique_name
from tests.e2e.conftest import http_json

pytestmark = [pytest.mark.e2e, pytest.mark.emulator, pytest.mark.pubsub]


@pytest.fixture(scope="module")
def clouds() -> Iterator[tuple[GcpStack, AzureStack]]:
    require_pubsub_emulator("the GCP fan-out")
    with contextlib.ExitStack() as stack:
        gcp, azure = both_clouds(stack, bucket=unique_name("src"), container=unique_name("dst"))
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
    api = gcp.api_url if cloud == "gcp" else azure.api_url
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
    assert run_verify(GcsSource(bucket), AzureBlobDestination(container)).clean


@pytest.mark.parametrize("cloud", ["gcp", "azure"])
def test_bad_migration_requests(clouds: tuple[GcpStack, AzureStack], cloud: str) -> None:
    gcp, azure = clouds
    api = gcp.api_url if cloud == "gcp" else azure.api_url
    status, body = http_json("POST", f"{api}/migrations", b'{"source": "s3://x", "dest": "az://y"}')
    assert (status, body["error"]) == (400, "bad_request")
    status, body = http_json("GET", f"{api}/migrations/nope?container=nothing-here")
    assert (status, body["error"]) == (404, "not_found")
