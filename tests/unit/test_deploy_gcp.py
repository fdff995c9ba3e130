"""deploy/gcp.py --dry-run: the exact gcloud commands, checked against main.py."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helper import assert_valid_bash_in_order, deploy_dry_run

ROOT = Path(__file__).resolve().parents[2]
TENANT = "44444444-4444-4444-4444-444444444444"
PRINCIPAL = "55555555-5555-5555-5555-555555555555"


def dry_run(*extra: str) -> list[str]:
    return deploy_dry_run("gcp.py", "--project", "proj-1", "--bucket", "bkt", *extra)


def main_exports() -> set[str]:
    import main

    return set(main.__all__)


@pytest.mark.parametrize("style", ["notification", "eventarc"])
def test_every_entry_point_in_main_is_deployed_and_nothing_else(style: str) -> None:
    lines = dry_run("--trigger", style)
    deployed = [re.search(r"--entry-point=(\w+)", line) for line in lines if "functions deploy" in line]
    entry_points = {m.group(1) for m in deployed if m}
    assert len(deployed) == len(entry_points) == 9
    assert entry_points == main_exports()


def test_the_script_is_valid_bash_in_order() -> None:
    lines = dry_run()
    assert lines[0] == "set -euo pipefail"
    order = [
        "services enable",
        "service-accounts create gray-runtime",
        "buckets create",
        "topics create",
        "notifications create",
        "functions deploy on-upload",
        "functions deploy process-job",
        "subscriptions update",
    ]
    assert_valid_bash_in_order(lines, order)


def test_event_functions_retry_and_the_api_needs_authentication() -> None:
    for line in dry_run():
        if "functions deploy" not in line:
            continue
        words = shlex.split(line)
        assert "--gen2" in words and "--runtime=python312" in words
        if "--trigger-http" in words:
            assert "--no-allow-unauthenticated" in words
            assert "--allow-unauthenticated" not in words
        else:
            assert "--retry" in words
            assert any(w.startswith("--trigger-service-account=gray-invoker@") for w in words)


def test_dead_letter_policy_and_its_iam() -> None:
    text = "\n".join(dry_run())
    assert "--dead-letter-topic=grayscale-jobs-dead --max-delivery-attempts=5" in text
    agent = "service-${PROJECT_NUMBER}@gcp-sa-pubsub.iam.gserviceaccount.com"
    assert re.search(rf"topics add-iam-policy-binding grayscale-jobs-dead .*{re.escape(agent)}.*pubsub.publisher", text)
    assert re.search(rf"subscriptions add-iam-policy-binding .*{re.escape(agent)}.*pubsub.subscriber", text)


def test_least_privilege_no_project_wide_roles_for_the_runtime() -> None:
    text = "\n".join(dry_run())
    assert "roles/owner" not in text and "roles/editor" not in text
    for line in text.splitlines():
        if "projects add-iam-policy-binding" in line:
            assert "gray-runtime" not in line
    assert "buckets add-iam-policy-binding gs://bkt --member=serviceAccount:gray-runtime" in text


@pytest.mark.parametrize("style", ["notification", "eventarc"])
def test_teardown_names_every_resource_the_deploy_creates(style: str) -> None:
    deploy = "\n".join(dry_run("--trigger", style))
    teardown_lines = dry_run("--trigger", style, "--teardown")
    teardown = "\n".join(teardown_lines)
    subprocess.run(["bash", "-n"], input=teardown, text=True, check=True)
    for name in re.findall(r"functions deploy (\S+)", deploy):
        assert f"functions delete {name} " in teardown
    for topics in re.findall(r"pubsub topics create ((?:[\w-]+ )+)--project", deploy):
        for topic in topics.split():
            assert re.search(rf"topics delete .*\b{topic}\b", teardown)
    for account in re.findall(r"service-accounts create ([\w-]+)", deploy):
        assert f"service-accounts delete {account}@" in teardown
    assert "gs://bkt" in teardown and "buckets create" in deploy
    if style == "eventarc":
        assert "remove-iam-policy-binding" in teardown
    assert "services disable" not in teardown, "APIs may serve other things: they stay"


def test_fresh_project_steps_come_in_a_working_order() -> None:
    """The defects of a fresh project, each mended: build account, GCS agent made first, --project, Token Creator."""
    lines = dry_run("--azure-tenant-id", TENANT)
    text = "\n".join(lines)
    for line in (x for x in lines if "functions deploy" in x):
        assert "--build-service-account=projects/proj-1/serviceAccounts/gray-build@" in line
    agent = next(i for i, x in enumerate(lines) if x.startswith("gcloud storage service-agent"))
    bound = next(i for i, x in enumerate(lines) if "gs-project-accounts" in x)
    assert agent < bound, "the GCS service agent exists before it is bound"
    notification = next(x for x in lines if "notifications create" in x)
    assert "--project=proj-1" in notification
    token_creator = [x for x in lines if "gcp-sa-pubsub" in x and "roles/iam.serviceAccountTokenCreator" in x]
    assert len(token_creator) == 1 and "service-accounts add-iam-policy-binding gray-invoker@" in token_creator[0]
    assert not [x for x in lines if "projects add-iam-policy-binding" in x and "serviceAccountTokenCreator" in x]
    assert "roles/storage.objectViewer" in text and "roles/storage.objectUser" in text


def test_cross_cloud_identity_on_gcp() -> None:
    text = "\n".join(dry_run("--azure-tenant-id", TENANT, "--azure-client-id", "cid", "--azure-storage-account", "sa1",
                             "--azure-container", "ct", "--azure-principal-id", PRINCIPAL))  # fmt: skip
    assert f"--issuer-uri=https://login.microsoftonline.com/{TENANT}/v2.0" in text
    # The audience a managed identity's v2 token really carries (the exchange app's id), and the documented one.
    assert "--allowed-audiences=fb60f99c-7a34-4190-8149-302f77469936,api://AzureADTokenExchange" in text
    condition = f"assertion.tid=='{TENANT}' && assertion.sub=='{PRINCIPAL}'"
    assert shlex.quote(f"--attribute-condition={condition}") in text
    assert f"workloadIdentityPools/gray-azure/subject/{PRINCIPAL}" in text
    for line in text.splitlines():
        if "functions deploy" in line:
            writers = (
                "migrations",
                "migrate-batch",
                "migrate-batch-dead",
                "migrate-replicate",
                "migrate-replicate-dead",
            )
            writes_azure = any(f"functions deploy {n} " in line for n in writers)
            assert ("AZURE_CLIENT_ID=cid" in line) == writes_azure, line
    assert "keys create" not in text and "GOOGLE_APPLICATION_CREDENTIALS" not in text, "no key file anywhere"


@pytest.mark.parametrize("bad", ["t", "x' || true || '", "4444-4444"])
def test_a_tenant_or_principal_id_that_is_not_a_guid_is_refused(bad: str) -> None:
    for flag in ("--azure-tenant-id", "--azure-principal-id"):
        extra = [] if flag == "--azure-tenant-id" else ["--azure-tenant-id", TENANT]
        done = subprocess.run([sys.executable, "deploy/gcp.py", "--project", "p", "--bucket", "b", *extra, flag, bad,
                               "--dry-run"], cwd=ROOT, capture_output=True, text=True)  # fmt: skip
        assert done.returncode == 2 and f"{flag} must be a GUID" in done.stderr


def test_public_api_is_an_explicit_opt_in() -> None:
    api = next(x for x in dry_run("--public-api") if "functions deploy api " in x)
    assert "--allow-unauthenticated" in api.split()
    api = next(x for x in dry_run() if "functions deploy api " in x)
    assert "--no-allow-unauthenticated" in api.split()


@pytest.mark.parametrize("public", [[], ["--public-api"]], ids=["private", "public"])
def test_no_migration_route_is_ever_deployed_publicly(public: list[str]) -> None:
    """The control plane can freeze uploads and start copies: its function is IAM-private whatever --public-api says,
    and the public one carries no Azure identity."""
    lines = [x for x in dry_run(*public) if "functions deploy" in x and "--trigger-http" in x]
    control = next(x for x in lines if "functions deploy migrations " in x)
    assert "--no-allow-unauthenticated" in control.split() and "--allow-unauthenticated" not in control.split()
    assert "--entry-point=migrations" in control
    public_ones = [x for x in lines if "--allow-unauthenticated" in x.split()]
    assert all("--entry-point=api" in x for x in public_ones)


def test_the_rollback_write_grant_is_an_opt_in_for_one_member() -> None:
    grants = [x for x in dry_run() if "buckets add-iam-policy-binding" in x]
    assert [g for g in grants if "objectUser" in g] == [
        "gcloud storage buckets add-iam-policy-binding gs://bkt "
        "--member=serviceAccount:gray-runtime@proj-1.iam.gserviceaccount.com --role=roles/storage.objectUser "
        "--project=proj-1"
    ], "without the flag only the functions' own account writes the bucket"
    member = "principal://iam.googleapis.com/projects/1/locations/global/workloadIdentityPools/gray-azure/subject/ops"
    opted = [x for x in dry_run("--rollback-writer", member) if "buckets add-iam-policy-binding" in x]
    assert [g for g in opted if g not in grants] == [
        f"gcloud storage buckets add-iam-policy-binding gs://bkt --member={member} --role=roles/storage.objectUser "
        "--project=proj-1"
    ]
    refused = subprocess.run(
        ["python", str(ROOT / "deploy" / "gcp.py"), "--project", "p", "--bucket", "b", "--rollback-writer", "ops@x.io",
         "--dry-run"], capture_output=True, text=True, cwd=ROOT,
    )  # fmt: skip
    assert refused.returncode == 2 and "must be an IAM member" in refused.stderr


def test_the_replication_notification_is_made_by_plan_live_not_by_the_deploy() -> None:
    """An idle bucket pays no replication invocation per change: the deploy makes live sync's topic, its function
    and the GCS agent's right to publish there, but no notification on it (``plan --live`` does; ``finish`` and the
    bucket's teardown remove it)."""
    from core import names

    deploy = "\n".join(dry_run())
    assert "notifications create" in deploy and "--topic=gcs-notifications" in deploy  # the upload trigger's
    assert f"--topic={names.REPLICATION} " not in deploy and f"--topic={names.REPLICATION}\n" not in deploy
    assert f"--trigger-topic={names.REPLICATION}" in deploy
    assert re.search(rf"topics add-iam-policy-binding {names.REPLICATION} .*roles/pubsub.publisher", deploy)
