"""The deploy scripts run for real, against stand-ins for gcloud and az: the order, idempotence, retries, the ids.

The stand-ins log each call and answer as a fresh project would (nothing exists
yet) or as one already deployed (everything exists). This checks what the
printed commands cannot show alone: that a second run creates nothing, that a
role still propagating is waited for, and that the JSON last line of one
script is what the other takes, in the order gcp.py, azure.py, gcp.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TENANT = "44444444-4444-4444-4444-444444444444"
APP_PRINCIPAL = "55555555-5555-5555-5555-555555555555"

FAKE_CLI = textwrap.dedent(
    """\
    #!PYTHON
    import os, sys, time
    args = sys.argv[1:]
    line = " ".join(args)
    log = os.environ["FAKE_LOG"]
    with open(log, "a") as out:
        out.write(os.path.basename(sys.argv[0]) + " " + line + "\\n")
    fail = os.environ.get("FAKE_FAIL", "")  # "substring:times": fail that many times first (role propagation)
    if fail:
        what, times = fail.rsplit(":", 1)
        if what in line:
            counter = log + ".failures"
            done = int(open(counter).read()) if os.path.exists(counter) else 0
            if done < int(times):
                open(counter, "w").write(str(done + 1))
                sys.stderr.write("403 AuthorizationPermissionMismatch\\n")
                sys.exit(1)
    fresh = os.environ.get("FAKE_MODE") == "fresh"
    deleted = os.environ.get("FAKE_MODE") == "deleted"  # torn down within 30 days: soft-deleted, still described
    values = {
        "value(state)": "" if fresh else ("DELETED" if deleted else "ACTIVE"),
        "value(projectNumber)": "123456789012", "value(uniqueId)": "1098765432101234",
        "user.type": "user", "id": "deployer-object-id", "principalId": "55555555-5555-5555-5555-555555555555",
        "clientId": "writer-client-id", "tenantId": "44444444-4444-4444-4444-444444444444",
        "defaultHostName": "app1.azurewebsites.net",
        "systemKeys.blobs_extension": "blobs-key", "name": "a-function",
        "value(topic)": "" if fresh else ("//pubsub.googleapis.com/projects/proj-1/topics/gcs-notifications\\n"
                                          "//pubsub.googleapis.com/projects/proj-1/topics/migrate-replication"),
        "value(eventTrigger.trigger)": "trigger-1", "value(transport.pubsub.subscription)": "sub-1",
    }
    for key, value in values.items():
        if f"--format={key}" in args or (args.count("--query") and args[args.index("--query") + 1] == key):
            if "principalId" == key and "identity show" in line and "-data " not in line:
                value = "writer-principal-id"  # the data identity's is the GUID above
            for row in value.splitlines() or [""]:  # a line at a time, as a real lister pages: a reader may go early
                print(row, flush=True)
                time.sleep(0.05)
            sys.exit(0)
    if fresh and (args[-1:] != ["--quiet"]) and any(w in args for w in ("describe", "show")):
        sys.exit(1)  # nothing exists yet
    sys.exit(0)
    """
)


@pytest.fixture
def clis(tmp_path: Path) -> dict[str, str]:
    """A PATH with stand-ins for gcloud and az, and the environment the scripts run with."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name in ("gcloud", "az"):
        path = bin_dir / name
        path.write_text(FAKE_CLI.replace("PYTHON", sys.executable))
        path.chmod(0o755)
    return {
        **os.environ,
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "FAKE_LOG": str(tmp_path / "calls.log"),
        "RETRY_SECONDS": "0",
        "PYTHON": "true",  # the Azure zip is built by deploy/package.py, tested on its own
    }


def deploy(script: str, env: dict[str, str], *args: str, mode: str = "fresh", fail: str = "") -> tuple[dict, str]:
    done = subprocess.run([sys.executable, f"deploy/{script}", *args], cwd=ROOT, capture_output=True, text=True,
                          env={**env, "FAKE_MODE": mode, "FAKE_FAIL": fail}, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1]), done.stderr


def calls(env: dict[str, str]) -> list[str]:
    log = Path(env["FAKE_LOG"])
    found = log.read_text().splitlines() if log.exists() else []
    log.unlink(missing_ok=True)
    Path(env["FAKE_LOG"] + ".failures").unlink(missing_ok=True)
    return found


def test_the_cross_cloud_order_passes_each_scripts_ids_to_the_other(clis: dict[str, str]) -> None:
    gcp_args = ["--project", "proj-1", "--bucket", "bkt", "--azure-tenant-id", TENANT]
    gcp_ids, _ = deploy("gcp.py", clis, *gcp_args)
    assert gcp_ids == {
        "gcp_project_number": "123456789012",
        "gcp_runtime_sa_id": "1098765432101234",
        "gcp_reader_sa": "gray-reader@proj-1.iam.gserviceaccount.com",
        "gcp_wif_provider": "projects/123456789012/locations/global/workloadIdentityPools/gray-azure/providers/azure",
    }
    calls(clis)
    azure_ids, _ = deploy(
        "azure.py", clis, "--resource-group", "rg", "--storage-account", "sa1", "--app", "app1",
        "--gcp-project-number", gcp_ids["gcp_project_number"], "--gcp-wif-provider", gcp_ids["gcp_wif_provider"],
        "--gcp-reader-sa", gcp_ids["gcp_reader_sa"], "--gcp-runtime-sa-id", gcp_ids["gcp_runtime_sa_id"],
    )  # fmt: skip
    assert azure_ids == {
        "azure_tenant_id": TENANT,
        "azure_client_id": "writer-client-id",
        "azure_principal_id": APP_PRINCIPAL,
        "azure_storage_account": "sa1",
        "azure_container": "grayscale",
    }
    made = calls(clis)
    assert any("federated-credential create" in c and "--subject 1098765432101234" in c for c in made)
    assert any(f"GCP_WORKLOAD_IDENTITY_PROVIDER={gcp_ids['gcp_wif_provider']}" in c for c in made)
    again = [f"--{k.replace('_', '-')}={v}" for k, v in azure_ids.items() if k != "azure_tenant_id"]
    deploy("gcp.py", clis, *gcp_args, *again, mode="existing")
    made = calls(clis)
    member = f"subject/{APP_PRINCIPAL} --role=roles/iam.workloadIdentityUser"
    assert any("service-accounts add-iam-policy-binding gray-reader@" in c and member in c for c in made)
    migrate = next(c for c in made if "functions deploy migrate-batch " in c)
    assert "AZURE_CLIENT_ID=writer-client-id" in migrate and "AZURE_STORAGE_ACCOUNT_URL=https://sa1.blob." in migrate


@pytest.mark.parametrize(
    ("script", "args"),
    [
        ("gcp.py", ["--project", "proj-1", "--bucket", "bkt", "--azure-tenant-id", TENANT]),
        ("azure.py", ["--resource-group", "rg", "--storage-account", "sa1", "--app", "app1"]),
    ],
)
def test_a_second_run_creates_nothing_that_exists(script: str, args: list[str], clis: dict[str, str]) -> None:
    deploy(script, clis, *args, mode="fresh")
    first = calls(clis)
    deploy(script, clis, *args, mode="existing")
    second = calls(clis)
    guarded = ("service-accounts create", "buckets create", "topics create", "workload-identity-pools create",
               "create-oidc", "notifications create", "functionapp create")  # fmt: skip
    assert any(g in c for c in first for g in guarded), "a fresh project gets its resources"
    assert not [c for c in second if any(g in c for g in guarded)], "nothing that exists is made again"


def test_a_redeploy_after_a_teardown_undeletes_the_soft_deleted_pool_and_provider(clis: dict[str, str]) -> None:
    deploy("gcp.py", clis, "--project", "proj-1", "--bucket", "bkt", "--azure-tenant-id", TENANT, mode="deleted")
    made = calls(clis)
    assert any("workload-identity-pools undelete gray-azure" in c for c in made)
    undone = [i for i, c in enumerate(made) if "providers undelete azure" in c]
    updated = [i for i, c in enumerate(made) if "providers update-oidc azure" in c]
    assert undone and updated and undone[0] < updated[0], "the provider comes back, then gets today's trust settings"
    assert not any(" create gray-azure" in c or "create-oidc" in c for c in made)


def test_a_role_still_propagating_is_waited_for_and_said(clis: dict[str, str]) -> None:
    args = ["--resource-group", "rg", "--storage-account", "sa1", "--app", "app1"]
    _, stderr = deploy("azure.py", clis, *args, fail="storage container create:2")
    assert stderr.count("waiting for the data roles of the deployer on the storage account") == 2
    assert sum("storage container create" in c for c in calls(clis)) == 3


def test_a_role_that_never_comes_stops_the_script_with_a_sentence(clis: dict[str, str]) -> None:
    args = ["--resource-group", "rg", "--storage-account", "sa1", "--app", "app1"]
    done = subprocess.run([sys.executable, "deploy/azure.py", *args], cwd=ROOT, capture_output=True, text=True,
                          env={**clis, "FAKE_MODE": "fresh", "FAKE_FAIL": "storage container create:99",
                               "RETRY_TRIES": "3"}, timeout=120)  # fmt: skip
    assert done.returncode != 0
    assert "gave up waiting for the data roles of the deployer on the storage account after 3 tries" in done.stderr
    assert not any("functionapp create" in c for c in calls(clis)), "nothing after the failed step runs"


def test_a_service_principal_deployer_is_found_without_signed_in_user(clis: dict[str, str], tmp_path: Path) -> None:
    fake = Path(clis["PATH"].split(os.pathsep)[0]) / "az"
    fake.write_text(fake.read_text().replace('"user.type": "user"', '"user.type": "servicePrincipal"'))
    deploy("azure.py", clis, "--resource-group", "rg", "--storage-account", "sa1", "--app", "app1")
    made = calls(clis)
    assert not any("signed-in-user" in c for c in made)
    assert any(c.startswith("az ad sp show --id") for c in made)
    assert any("--assignee-principal-type ServicePrincipal --role Storage Blob Data Contributor" in c for c in made)


@pytest.mark.parametrize(
    ("script", "args"),
    [
        ("gcp.py", ["--project", "proj-1", "--bucket", "bkt", "--azure-tenant-id", TENANT]),
        ("azure.py", ["--resource-group", "rg", "--storage-account", "sa1", "--app", "app1"]),
    ],
)
def test_teardown_runs_to_the_end(script: str, args: list[str], clis: dict[str, str]) -> None:
    done = subprocess.run([sys.executable, f"deploy/{script}", *args, "--teardown"], cwd=ROOT, capture_output=True,
                          text=True, env={**clis, "FAKE_MODE": "existing"}, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr
    made = calls(clis)
    assert made and ("service-accounts delete gray-runtime@" in made[-1] or "storage account delete" in made[-1])
