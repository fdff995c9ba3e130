"""function_app.py's wiring, read as the host reads it: app.get_functions() and get_bindings()."""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

import pytest

from functions_azure import settings

ROOT = Path(__file__).resolve().parents[2]
HOST = json.loads((ROOT / "host.json").read_text())


@functools.cache
def functions() -> dict[str, list[dict[str, Any]]]:
    """name -> binding dicts; get_functions() may be called once per process, so it is cached."""
    import function_app

    return {
        f.get_function_name(): [b.get_dict_repr() for b in f.get_bindings()] for f in function_app.app.get_functions()
    }


def trigger(name: str) -> dict[str, Any]:
    (found,) = [b for b in functions()[name] if b["type"].endswith("Trigger")]
    return found


def test_the_app_has_exactly_these_functions() -> None:
    assert set(functions()) == {
        "on_upload", "process_job", "on_poison", "api_upload", "api_read", "migrate_batch", "migrate_batch_poison",
        "api_migrations", "api_migration_status", "api_migration_check", "api_retry", "api_migration_list",
            "api_migration_step",
    }  # fmt: skip


def test_the_migration_fans_out_on_its_own_queue() -> None:
    from migrate.fanout import BATCH_QUEUE

    assert trigger("migrate_batch")["queueName"] == BATCH_QUEUE
    assert trigger("migrate_batch_poison")["queueName"] == f"{BATCH_QUEUE}-poison"


def test_on_upload_is_an_event_grid_blob_trigger_on_uploads() -> None:
    binding = trigger("on_upload")
    assert binding["type"] == "blobTrigger"
    assert binding["source"] == "EventGrid"
    assert binding["path"] == f"%{settings.CONTAINER_SETTING}%/uploads/{{name}}"
    assert binding["connection"] == settings.CONNECTION


def test_queue_triggers_agree_with_the_settings_and_the_poison_convention() -> None:
    assert trigger("process_job")["queueName"] == settings.JOBS_QUEUE
    assert trigger("on_poison")["queueName"] == settings.POISON_QUEUE == f"{settings.JOBS_QUEUE}-poison"
    assert trigger("process_job")["connection"] == trigger("on_poison")["connection"] == settings.CONNECTION


def test_http_routes_and_auth_levels() -> None:
    upload, read = trigger("api_upload"), trigger("api_read")
    assert (upload["route"], [str(m.value) for m in upload["methods"]]) == ("jobs", ["POST"])
    assert str(upload["authLevel"].value) == "function"
    assert read["route"] == "{*path}"
    assert "GET" in [str(m.value) for m in read["methods"]] and "POST" not in [str(m.value) for m in read["methods"]]
    assert str(read["authLevel"].value) == "anonymous"


def test_host_json_matches_the_code() -> None:
    assert HOST["version"] == "2.0"
    assert HOST["extensionBundle"] == {"id": "Microsoft.Azure.Functions.ExtensionBundle", "version": "[4.*, 5.0.0)"}
    queues = HOST["extensions"]["queues"]
    assert queues["maxDequeueCount"] == settings.MAX_DEQUEUE_COUNT
    assert queues["messageEncoding"] == "base64"
    assert HOST["extensions"]["http"]["routePrefix"] == "api"


def test_local_settings_example_configures_what_the_bindings_need() -> None:
    values = json.loads((ROOT / "local.settings.json.example").read_text())["Values"]
    assert values[settings.CONNECTION] == values[settings.HOST_CONNECTION] == "UseDevelopmentStorage=true"
    assert values["FUNCTIONS_WORKER_RUNTIME"] == "python"
    assert settings.CONTAINER_SETTING in values


@pytest.mark.parametrize("name", ["function_app.py", "host.json", "requirements.txt"])
def test_the_layout_is_valid_for_func_start(name: str) -> None:
    assert (ROOT / name).is_file()
    ignored = (ROOT / ".funcignore").read_text().split()
    assert name not in ignored
    assert "functions_azure" not in ignored and "core" not in ignored


def test_names_spelled_twice_agree() -> None:
    from core.clouds.azure_blob import CONNECTION_STRING_VAR
    from functions_azure import services as azure_services
    from migrate.fanout import BATCH_QUEUE

    assert settings.BATCH_QUEUE == BATCH_QUEUE
    assert azure_services.CONNECTION_STRING_VAR is CONNECTION_STRING_VAR


def test_every_topic_and_queue_name_comes_from_core_names() -> None:
    # A literal name anywhere but core/names.py (and the docs) could drift from the others.
    root = Path(__file__).resolve().parents[2]
    literals = ("grayscale-jobs", "gcs-notifications", "migrate-batches")
    offenders = [
        f"{path.relative_to(root)}:{number}"
        for folder in ("core", "migrate", "functions_gcp", "functions_azure", "devstack", "deploy", "bench")
        for path in (root / folder).rglob("*.py")
        if path.name != "names.py"
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if any(f'"{name}' in line or f"'{name}" in line for name in literals)
    ]
    assert offenders == []


def test_the_operators_keys_go_to_every_migration_function_and_only_those() -> None:
    """deploy/azure.py --operator sets a key on exactly the FUNCTION-level routes under migrations/."""
    from deploy.azure import MIGRATION_HTTP_FUNCTIONS

    control_plane = {
        name
        for name, bindings in functions().items()
        for b in bindings
        if b["type"] == "httpTrigger" and str(b.get("route", "")).startswith("migrations")
    }
    assert set(MIGRATION_HTTP_FUNCTIONS) == control_plane
    assert all(str(trigger(name)["authLevel"].value) == "function" for name in control_plane)
