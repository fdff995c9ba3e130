"""The migration's HTTP routes, added to the API of both clouds (``core.http_api`` routes).

- ``POST {base}/migrations`` with ``{"source": "gs://B[/P]", "dest": "az://C[/P]", "batch_size": N}``:
  plans a run and enqueues its batches for the fan-out functions; 202 with the run and ``Location``.
- ``POST {base}/migrations/check`` with ``{"source", "dest"}``: the preflight (``migrate.check``);
  200 with ``{"ok": bool, "missing": [{"side", "permission", "role", "message"}]}``; 400 / 404 / 503.
- ``POST {base}/migrations/{run_id}/cutover|abort|rollback|finish[?container=C]`` with ``{}`` or
  ``{"timeout": S}`` (cutover: also ``"final_verify": true``): the step runs as a queued task (``migrate.steps``);
  202 with ``Location``, the run, whose ``steps`` shows it. 409 where this side may not write the bucket (Azure).
- ``GET {base}/migrations/{run_id}[?container=C]``: the run's status (the container defaults to
  ``MIGRATE_CONTAINER``, then ``AZURE_STORAGE_CONTAINER``); 200 / 404.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable

from core.errors import BadRequest, Conflict, NotFound
from core.http_api import Request, Response, Route, html_page, json_response, read_capped
from core.ports import TaskQueue
from migrate import actor, allowlist, fanout, runs
from migrate.locations import Location
from migrate.throttle import parse_size


def routes(queue_factory: Callable[[], TaskQueue], *, writes_source: bool = True) -> list[Route]:
    """The routes, with the queue the batches go to on this cloud. ``writes_source``: whether this side's identity
    may write the GCS bucket (GCP's may; Azure's only reads), which going live needs."""

    def start(request: Request, match: re.Match[str]) -> Response:
        from core.clouds.azure_blob import AzureBlobObjectStore
        from migrate.locations import UsageError, open_ends, parse_location

        try:
            body = json.loads(read_capped(request, 64 * 1024) or b"{}")
            source_at = parse_location(str(body.get("source", "")), "gs")
            dest_at = parse_location(str(body.get("dest", "")), "az")
            batch_size = int(body.get("batch_size", fanout.DEFAULT_BATCH_OBJECTS))
            max_rate = float(body["max_rate"]) if body.get("max_rate") is not None else None
            bwlimit = parse_size(str(body["bwlimit"])) if body.get("bwlimit") is not None else None
            max_batches = int(body["max_batches"]) if body.get("max_batches") is not None else None
            is_live = bool(body.get("live"))
        except (ValueError, AttributeError, UsageError) as exc:
            raise BadRequest(f'{exc}; send {{"source": "gs://BUCKET", "dest": "az://CONTAINER"}}') from exc
        allowed(source_at, dest_at)
        if is_live:
            # Going live makes the bucket's replication notification, which needs storage.buckets.update: the
            # operator holds it, the functions do not (and should not). Refused before anything is written.
            raise Conflict(
                f"going live makes the replication notification of {source_at}, which needs storage.buckets.update "
                f"(roles/storage.admin) that this function does not hold: run `python -m migrate plan {source_at} "
                f"{dest_at} --live` as the operator"
            )
        try:
            source, _ = open_ends(source_at, dest_at)
        except UsageError as exc:
            raise BadRequest(str(exc)) from exc
        records, run_id = AzureBlobObjectStore(dest_at.container), runs.new_run_id()
        run = fanout.plan(
            source,
            records,
            queue_factory(),
            run_id=run_id,
            source_uri=str(source_at),
            dest_uri=str(dest_at),
            source_prefix=source_at.prefix,
            dest_prefix=dest_at.prefix,
            max_objects=max(batch_size, 1),
            max_rate=max_rate,
            bwlimit=bwlimit,
            max_batches=max_batches,
            started_by=actor.from_request(request.header, request.query),
        )
        body = {"run_id": run.run_id, "batches": run.batches, "objects": run.objects, "bytes": run.bytes,
                "live": run.live}  # fmt: skip
        location = f"{request.base_url}/migrations/{run.run_id}?container={dest_at.container}"
        return json_response(202, body, Location=location)

    def check(request: Request, match: re.Match[str]) -> Response:
        from migrate import check
        from migrate.locations import UsageError, open_ends, parse_location

        try:
            body = json.loads(read_capped(request, 64 * 1024) or b"{}")
            source_at = parse_location(str(body.get("source", "")), "gs")
            dest_at = parse_location(str(body.get("dest", "")), "az")
        except (ValueError, AttributeError, UsageError) as exc:
            raise BadRequest(f'{exc}; send {{"source": "gs://BUCKET", "dest": "az://CONTAINER"}}') from exc
        allowed(source_at, dest_at)
        source, dest = open_ends(source_at, dest_at, checked=False)
        missing = check.preflight(source, dest, source_prefix=source_at.prefix, dest_prefix=dest_at.prefix)
        return json_response(200, check.result(missing))

    def show(request: Request, match: re.Match[str]) -> Response:
        from core.clouds.azure_blob import AzureBlobObjectStore

        if wants_html(request):
            return page()
        container = _container(request)
        try:
            return json_response(200, runs.status(AzureBlobObjectStore(container), match["run_id"]))
        except NotFound:
            raise NotFound(f"no migration run {match['run_id']!r} in container {container!r}") from None

    def step(request: Request, match: re.Match[str]) -> Response:
        from core.clouds.azure_blob import AzureBlobObjectStore
        from migrate import steps

        container, name, run_id = _container(request), match["step"], match["run_id"]
        records = AzureBlobObjectStore(container)
        try:
            run = runs.load_run(records, run_id)
        except NotFound:
            raise NotFound(f"no migration run {run_id!r} in container {container!r}") from None
        if not writes_source:
            # Every step writes the bucket's markers; this side's identity may only read GCS.
            raise Conflict(f"the {name} writes {run.source}, which this function may only read: run `python -m "
                           f"migrate {name} {run.source} {run.dest}` as the operator")  # fmt: skip
        try:
            body = json.loads(read_capped(request, 64 * 1024) or b"{}")
            options = {"timeout": float(body["timeout"])} if body.get("timeout") is not None else {}
            if name == "cutover":
                options["final_verify"] = bool(body.get("final_verify", False))
        except (ValueError, AttributeError, TypeError) as exc:
            raise BadRequest(f'{exc}; send {{}} or {{"timeout": SECONDS}}') from exc
        if steps.request(records, run_id, name, by=actor.from_request(request.header, request.query), options=options):
            queue_factory().send({"step": name, "run_id": run_id, "container": container})
        location = f"{request.base_url}/migrations/{run_id}?container={container}"
        return json_response(202, {"run_id": run_id, "step": name, "state": "queued"}, Location=location)

    def listing(request: Request, match: re.Match[str]) -> Response:
        from core.clouds.azure_blob import AzureBlobObjectStore

        if wants_html(request):
            return page()
        container = _container(request)
        return json_response(200, {"container": container, "runs": runs.runs(AzureBlobObjectStore(container))})

    return [
        ("POST", re.compile(r"/migrations/(?P<run_id>[^/]+)/(?P<step>cutover|abort|rollback|finish)/?"), step),
        ("POST", re.compile(r"/migrations/check/?"), check),
        ("POST", re.compile(r"/migrations/?"), start),
        ("GET", re.compile(r"/migrations/?"), listing),
        ("GET", re.compile(r"/migrations/(?P<run_id>[^/]+)/?"), show),
    ]


def _container(request: Request) -> str:
    container = (
        request.query.get("container")
        or os.environ.get("MIGRATE_CONTAINER")
        or os.environ.get("AZURE_STORAGE_CONTAINER")
    )
    if not container:
        raise BadRequest("say which container holds the runs: ?container=NAME")
    allowlist.check_container(container)
    return container


def allowed(source_at: Location, dest_at: Location) -> None:
    """Both ends are on the allowlist (``NotAllowed``, 403), checked before any request to storage."""
    allowlist.check_source(source_at.container, source_at.prefix)
    allowlist.check_container(dest_at.container)


def wants_html(request: Request) -> bool:
    """A browser's navigation (``Accept: text/html`` first), not a client asking for JSON."""
    accept = request.header("Accept").lower()
    return "text/html" in accept.split(",")[0]


def page() -> Response:
    """The migration page: a shell that reads the same URL as JSON, so it holds no data and no key."""
    return html_page("migrations")
