"""The upload page in headless Chromium (Debian's), driven by Playwright, on both clouds' local stacks."""

from __future__ import annotations

import contextlib
import io
import urllib.parse
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from tests.helper import encode, hopper

pytestmark = [pytest.mark.e2e, pytest.mark.emulator]

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts"


@contextlib.contextmanager
def uploaded_on_the_page(browser: object, api: str, file: Path) -> Iterator[Any]:
    """A new browser page on the API's upload page, with ``file`` chosen and sent; closed after."""
    page = browser.new_page()  # type: ignore[attr-defined]
    try:
        page.goto(f"{api}/")
        page.set_input_files("#file", str(file))
        page.click("#send")
        yield page
    finally:
        page.close()


@pytest.mark.parametrize("stack", ["gcp_stack", "azure_stack"])
def test_upload_a_photo_and_see_the_grayscale_result(
    request: pytest.FixtureRequest, browser: object, stack: str, tmp_path: Path
) -> None:
    api = request.getfixturevalue(stack).api_url
    photo = tmp_path / "colour photo.jpg"
    photo.write_bytes(encode(hopper().resize((256, 192)), "JPEG", quality=90))
    with uploaded_on_the_page(browser, api, photo) as page:
        page.wait_for_selector('#status[data-state="DONE"]', timeout=30_000)
        page.wait_for_function("() => document.querySelector('#result').complete && "
                               "document.querySelector('#result').naturalWidth > 0", timeout=10_000)  # fmt: skip
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / f"page-{stack.split('_')[0]}.png"), full_page=True)
        assert "DONE" in page.inner_text("#status")
        src = page.get_attribute("#result", "src")
        assert src and "/result" in src
        with urllib.request.urlopen(urllib.parse.urljoin(f"{api}/", src), timeout=10) as response:
            shown = Image.open(io.BytesIO(response.read()))
        assert shown.mode == "L", "the page shows the grayscale result"
        assert shown.size == (256, 192)


@pytest.mark.parametrize("stack", ["gcp_stack", "azure_stack"])
def test_errors_show_as_readable_messages(
    request: pytest.FixtureRequest, browser: object, stack: str, tmp_path: Path
) -> None:
    api = request.getfixturevalue(stack).api_url
    fake = tmp_path / "not really.jpg"
    fake.write_text("this is text, not a photo")
    with uploaded_on_the_page(browser, api, fake) as page:
        page.wait_for_selector('#status[data-state="error"]', timeout=15_000)
        text = page.inner_text("#status")
        assert "not a supported image" in text and "HTTP 415" in text
        assert "Traceback" not in page.content()


def test_the_page_sends_the_key_from_its_fragment_and_explains_a_401(
    gcp_stack: Any, browser: object, tmp_path: Path
) -> None:
    """Opened as ``.../#code=KEY``, the upload carries ``x-functions-key``; without a key, a 401 says how to get one.

    The local hosts ask for no key, so the Azure 401 is played by the browser's own request routing.
    """
    photo = tmp_path / "photo.jpg"
    photo.write_bytes(encode(hopper().resize((64, 48)), "JPEG", quality=90))
    page = browser.new_page()  # type: ignore[attr-defined]
    try:
        sent: list[dict[str, str]] = []
        page.on("request", lambda r: sent.append(r.headers) if r.method == "POST" else None)
        page.goto(f"{gcp_stack.api_url}/#code=test-function-key")
        page.set_input_files("#file", str(photo))
        page.click("#send")
        page.wait_for_selector('#status[data-state="DONE"]', timeout=30_000)
        assert sent and sent[0].get("x-functions-key") == "test-function-key"

        page.route("**/jobs", lambda route: route.fulfill(status=401, body=""))
        page.goto(f"{gcp_stack.api_url}/")
        page.reload()
        page.set_input_files("#file", str(photo))
        page.click("#send")
        page.wait_for_selector('#status[data-state="error"]', timeout=15_000)
        assert "#code=KEY" in page.inner_text("#status")
    finally:
        page.close()


def test_the_migration_page_shows_a_running_live_migration_and_its_cutover(azure_stack: Any, browser: object) -> None:
    """A live run recorded in the stack's container, moved on batch by batch while the page is open."""
    import json as jsonlib

    from core.clouds.azure_blob import AzureBlobObjectStore
    from core.memory import InMemoryDestination, InMemorySource, InMemoryTaskQueue
    from migrate import fanout
    from migrate.runs import CHANGES, change_folder, run_key

    records = AzureBlobObjectStore(azure_stack.container)
    source, dest, queue = InMemorySource("page-src"), InMemoryDestination(), InMemoryTaskQueue()
    for index in range(12):
        source.add(f"data/{index:02d}.bin", bytes(100 * (index + 1)))
    run = fanout.plan(source, records, queue, source_uri="gs://page-src", dest_uri=f"az://{azure_stack.container}",
                      max_objects=2, live=True)  # fmt: skip
    messages = queue.drain()

    def head(key: str) -> Any:
        return next((b for b in dest.list(key) if b.key == key), None)

    for message in messages[:2]:
        fanout.process_batch(message, source, dest, records, queue, head)
    fanout.mark_failed(records, messages[2], "gave up after 5 attempts: GCS answered 403")
    for lag_ms in (400, 900, 1600):
        records.put(run_key(run.run_id, f"{CHANGES}{change_folder(datetime.now(UTC))}m{lag_ms}~{lag_ms}"), b"data/x")
    page = browser.new_page()  # type: ignore[attr-defined]
    try:
        page.goto(f"{azure_stack.api_url}/migrations/{run.run_id}?container={azure_stack.container}")
        page.wait_for_selector('#status[data-state="running"]', timeout=15_000)
        page.wait_for_function("() => document.querySelector('#lag polyline') !== null", timeout=10_000)
        assert "4 of 12" in page.inner_text("#objects-text")
        assert "GCS answered 403" in page.inner_text("#errors")
        assert "lag p50 0.90 s" in page.inner_text("#replication")
        assert "Azure is a replica" in page.inner_text("#cutover")
        assert page.eval_on_selector_all("#actions button", "bs => bs.map(b => b.textContent)") == ["Cut over", "Abort"]
        asked: list[str] = []
        page.on("dialog", lambda dialog: (asked.append(dialog.message), dialog.accept()))
        page.click("text=Cut over")  # Azure may only read the bucket: it names the command instead
        page.wait_for_selector('#notice[data-state="error"]', timeout=10_000)
        assert asked and "GCP freezes" in asked[0]
        assert f"python -m migrate cutover gs://page-src az://{azure_stack.container}" in page.inner_text("#notice")
        width = page.eval_on_selector("#objects-bar", "e => parseFloat(e.style.width)")
        assert 30 < width < 40, width
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "migration-running.png"), full_page=True)
        for message in messages[3:]:
            fanout.process_batch(message, source, dest, records, queue, head)
        cut = {"run_id": run.run_id, "switch": True, "frozen_seconds": 1.25}
        records.put(run_key(run.run_id, "cutover.json"), jsonlib.dumps(cut).encode())
        page.wait_for_function("() => document.querySelector('#cutover').textContent.includes('frozen 1.25 s')",
                               timeout=15_000)  # fmt: skip
        assert "10 of 12" in page.inner_text("#objects-text")  # the failed batch's 2 objects never moved
        page.wait_for_selector("#actions button:text('Roll back')", timeout=10_000)  # the next steps: back, or end
        assert page.eval_on_selector_all("#actions button", "bs => bs.map(b => b.textContent)") == [
            "Roll back",
            "Finish",
        ]
        page.screenshot(path=str(ARTIFACTS / "migration-cut-over.png"), full_page=True)
        back = {**cut, "rolled_back": True, "copied_back": 3, "frozen_seconds": 4.5}
        records.put(run_key(run.run_id, "rollback.json"), jsonlib.dumps(back).encode())
        page.wait_for_function("() => document.querySelector('#cutover').textContent.includes('Rolled back')",
                               timeout=15_000)  # fmt: skip
        assert "3 objects copied back, Azure held 4.50 s" in page.inner_text("#cutover")
        page.screenshot(path=str(ARTIFACTS / "migration-rolled-back.png"), full_page=True)
        page.goto(f"{azure_stack.api_url}/migrations?container={azure_stack.container}")
        page.wait_for_function("() => document.querySelector('#status').dataset.state !== undefined", timeout=10_000)
        assert "run(s)" in page.inner_text("#status"), page.inner_text("#status")
        page.wait_for_selector(f"text={run.run_id}", timeout=10_000)
        page.click(f"text={run.run_id}")
        page.wait_for_selector("#objects-text", timeout=10_000)
        assert run.run_id in page.inner_text("#title")
    finally:
        page.close()
