"""Azure's auth levels, enforced by the devhost as the host does (``--keys``): no path, encoding, case or method
reaches a migration function without one of its own keys, and the upload page's key opens no migration route."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from devstack.azure import AzureStack
from devstack.environment import environment
from tests.helper import encode, hopper, http_json, wait_for_job

pytestmark = [pytest.mark.e2e, pytest.mark.emulator]

HOST_KEY = "host-key-never-handed-out"
PAGE_KEY = "upload-page-key"  # api_upload's own key: the one the page is opened with (#code=)
OPERATOR_KEY = "operator-key"  # the migration functions' own key, for one operator
MIGRATION_FUNCTIONS = (
    "api_migrations", "api_migration_check", "api_migration_list", "api_migration_status", "api_migration_step",
)  # fmt: skip
RUN = "20261206T000000Z-abcdef"
PATHS = [
    "migrations", "migrations/", "migrations/check", f"migrations/{RUN}", "MIGRATIONS", f"Migrations/{RUN}",
    f"migrations%2F{RUN}", f"migrations%252F{RUN}", "migrations%2Fcheck", "%6Digrations", "./migrations",
    f"jobs/..%2Fmigrations%2F{RUN}", "migrations?container=x", f"migrations/{RUN}/cutover",
    f"migrations%2F{RUN}%2Ffinish", f"MIGRATIONS/{RUN}/Rollback",
]  # fmt: skip
METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"]


@pytest.fixture(scope="module")
def keyed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AzureStack]:
    keys = tmp_path_factory.mktemp("keys") / "keys.json"
    functions = {"api_upload": [PAGE_KEY], **{name: [OPERATOR_KEY] for name in MIGRATION_FUNCTIONS}}
    keys.write_text(json.dumps({"host": [HOST_KEY], "functions": functions}))
    with AzureStack(keys=Path(keys)) as stack, environment(stack.env()):
        yield stack


def call(url: str, method: str, key: str | None = None) -> tuple[int, bytes]:
    headers = {"x-functions-key": key} if key else {}
    data = b"{}" if method in ("POST", "PUT", "PATCH") else None
    request = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


@pytest.mark.parametrize("key", [None, PAGE_KEY], ids=["no key", "the page's key"])
def test_no_path_reaches_a_migration_route_without_its_key(keyed: AzureStack, key: str | None) -> None:
    reached = []
    for path in PATHS:
        for method in METHODS:
            status, body = call(f"{keyed.api_url}/{path}", method, key)
            if status < 400 or b"run_id" in body or b'"runs"' in body or b'"error": "not_allowed"' in body:
                reached.append(f"{method} /{path}: {status} {body[:80]!r}")
    assert reached == [], "\n".join(reached)


def test_the_operator_key_opens_the_migration_routes_and_the_page_key_the_upload(keyed: AzureStack) -> None:
    status, body = call(f"{keyed.api_url}/migrations", "GET", OPERATOR_KEY)
    assert status == 200 and json.loads(body)["container"] == keyed.container
    assert call(f"{keyed.api_url}/migrations", "GET", HOST_KEY)[0] == 200  # a host key opens all: never hand it out
    assert call(f"{keyed.api_url}/jobs", "POST", OPERATOR_KEY)[0] == 401  # the operator's key is not the page's
    image = encode(hopper(), "PNG")
    assert http_json("POST", f"{keyed.api_url}/jobs", image, {"Content-Type": "image/png"})[0] == 401
    status, job = http_json("POST", f"{keyed.api_url}/jobs", image, {"x-functions-key": PAGE_KEY})
    assert status == 202, job
    # The page, a job and its result stay anonymous (job ids are unguessable).
    assert wait_for_job(keyed.api_url, job["id"])["status"] == "DONE"
    assert call(f"{keyed.api_url}/jobs/{job['id']}/result", "GET")[0] == 200
    assert call(f"{keyed.api_url}/", "GET")[0] == 200


def test_the_migration_page_opens_anonymously_and_reads_with_the_operators_key(
    keyed: AzureStack, browser: object
) -> None:
    """The host refuses a keyed route's navigation before any page could send ``#code=``: so the shell is served
    by the anonymous page route (``?view=migrations``) and reads the runs with the key from its fragment."""
    from core.clouds.azure_blob import AzureBlobObjectStore
    from core.memory import InMemorySource, InMemoryTaskQueue
    from migrate import fanout

    source = InMemorySource("page-src")
    source.add("a.bin", b"a")
    run = fanout.plan(source, AzureBlobObjectStore(keyed.container), InMemoryTaskQueue(), source_uri="gs://page-src",
                      dest_uri=f"az://{keyed.container}")  # fmt: skip
    assert call(f"{keyed.api_url}/migrations", "GET")[0] == 401  # what a browser meets on the keyed route itself
    status, shell = call(f"{keyed.api_url}/?view=migrations", "GET")
    assert status == 200 and b"<title>Migrations</title>" in shell and run.run_id.encode() not in shell
    page = browser.new_page()  # type: ignore[attr-defined]
    try:
        page.goto(f"{keyed.api_url}/#code={PAGE_KEY}")
        page.click("#migrations")  # the upload page's link keeps the fragment
        page.wait_for_selector('#status[data-state="error"]', timeout=15_000)
        assert "operator key" in page.inner_text("#status")  # the page's key opens no migration route
        page.goto(f"{keyed.api_url}/?view=migrations#code={OPERATOR_KEY}")
        page.wait_for_selector('#status[data-state="done"]', timeout=15_000)
        page.click(f"text={run.run_id}")
        page.wait_for_function(f"() => document.querySelector('#title').textContent.includes('{run.run_id}')")
        assert f"run={run.run_id}" in page.url and page.url.endswith(f"#code={OPERATOR_KEY}")
        page.wait_for_selector("#objects-text", timeout=10_000)
        assert "of 1" in page.inner_text("#objects-text")
    finally:
        page.close()
