"""The migration API's allowlist: what it admits, the names it refuses, and 403 before any storage request."""

from __future__ import annotations

import json

import pytest

from core.errors import BadRequest, NotAllowed
from core.http_api import Request, handle
from core.memory import InMemoryObjectStore, InMemoryTaskQueue
from core.pipeline import Services
from migrate import allowlist
from migrate.http import routes

STORAGE_VARS = ("STORAGE_EMULATOR_HOST", "AZURE_STORAGE_CONNECTION_STRING", "AZURE_STORAGE_ACCOUNT_URL",
                "GOOGLE_CLOUD_PROJECT", "AzureWebJobsStorage")  # fmt: skip


@pytest.fixture(autouse=True)
def deployment(monkeypatch: pytest.MonkeyPatch) -> None:
    """A deployment of bucket ``photos`` and container ``grayscale``, with no storage reachable at all."""
    for name in (*STORAGE_VARS, allowlist.SOURCES_VAR, allowlist.CONTAINERS_VAR, "MIGRATE_CONTAINER"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("GCS_BUCKET", "photos")
    monkeypatch.setenv("AZURE_STORAGE_CONTAINER", "grayscale")


def test_the_default_is_the_deployments_own_bucket_and_container() -> None:
    allowlist.check_source("photos", "any/prefix/")
    allowlist.check_container("grayscale")
    with pytest.raises(NotAllowed, match="gs://public-data/ is not a source"):
        allowlist.check_source("public-data")
    with pytest.raises(NotAllowed, match="az://azure-webjobs-secrets is not a container"):
        allowlist.check_container("azure-webjobs-secrets")  # the host's keys live in the same account


def test_listed_buckets_prefixes_and_patterns(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(allowlist.SOURCES_VAR, "archive/2024, photos-*")
    monkeypatch.setenv(allowlist.CONTAINERS_VAR, "grayscale,moved-*")
    allowlist.check_source("archive", "2024/")
    allowlist.check_source("archive", "2024/january/")
    allowlist.check_source("photos-eu")
    for bucket, prefix in [("archive", ""), ("archive", "2025/"), ("archive", "2024x/"), ("photos", "")]:
        with pytest.raises(NotAllowed):
            allowlist.check_source(bucket, prefix)
    allowlist.check_container("moved-1")
    with pytest.raises(NotAllowed):
        allowlist.check_container("jobs")


@pytest.mark.parametrize("bucket", ["ab", "Photos", "-photos", "photos-", "a..b", "x" * 64, "gs", "a/b"])
def test_names_gcs_refuses_are_a_bad_request(bucket: str) -> None:
    with pytest.raises(BadRequest) as refused:
        allowlist.check_source(bucket)
    assert not isinstance(refused.value, NotAllowed)


@pytest.mark.parametrize("container", ["ab", "Grayscale", "gray--scale", "-gray", "gray_scale", "x" * 64, "$logs"])
def test_names_azure_refuses_are_a_bad_request(container: str) -> None:
    with pytest.raises(BadRequest) as refused:
        allowlist.check_container(container)
    assert not isinstance(refused.value, NotAllowed)


def call(method: str, path: str, body: dict[str, object] | None = None, **query: str) -> tuple[int, dict]:
    request = Request(method, path, {"Accept": "application/json"}, json.dumps(body or {}).encode(), "http://x",
                      query=query)  # fmt: skip
    answer = handle(Services.over(InMemoryObjectStore(), InMemoryTaskQueue()), request, routes(InMemoryTaskQueue))
    return answer.status, answer.json()


@pytest.mark.parametrize("path", ["/migrations", "/migrations/check"])
@pytest.mark.parametrize(
    ("source", "dest"),
    [("gs://public-data", "az://grayscale"), ("gs://photos", "az://azure-webjobs-secrets"),
     ("gs://photos", "az://jobs-elsewhere")],
)  # fmt: skip
def test_the_api_refuses_outside_the_list_with_403_before_any_storage_request(
    path: str, source: str, dest: str
) -> None:
    # No storage is configured: any request to it would end in a 500, not a 403.
    status, body = call("POST", path, {"source": source, "dest": dest, "live": True})
    assert (status, body["error"]) == (403, "not_allowed"), body


@pytest.mark.parametrize("path", ["/migrations", "/migrations/20261201T000000Z-abcdef"])
def test_reading_runs_of_another_container_is_403(path: str) -> None:
    status, body = call("GET", path, container="azure-webjobs-secrets")
    assert (status, body["error"]) == (403, "not_allowed"), body
    status, body = call("GET", path, container="Bad_Name")
    assert (status, body["error"]) == (400, "bad_request"), body
