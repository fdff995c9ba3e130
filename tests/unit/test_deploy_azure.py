"""deploy/azure.py --dry-run: the exact az / func commands, checked against function_app.py."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from tests.helper import GCP_IDS, assert_valid_bash_in_order, deploy_dry_run
from tests.unit.test_azure_wiring import functions

ROOT = Path(__file__).resolve().parents[2]


def dry_run(*extra: str) -> list[str]:
    base = ["azure.py", "--resource-group", "rg", "--storage-account", "sa1", "--app", "app1"]
    return deploy_dry_run(*base, *GCP_IDS, *extra)


def test_every_function_of_the_app_is_deployed_and_checked() -> None:
    lines = dry_run()
    assert any("deployment source config-zip --name app1" in line and "--build-remote true" in line for line in lines)
    assert not any(line.startswith("func ") for line in lines), "Core Tools are not needed to publish"
    checked = {m.group(1) for line in lines if (m := re.search(r"--function-name (\w+)", line))}
    assert checked == set(functions())


def test_valid_bash_in_order() -> None:
    lines = dry_run()
    order = [
        "group create",
        "storage account create",
        "queue create",
        "identity create --name app1-host",
        'role assignment create --assignee-object-id "${HOST_PRINCIPAL}"',
        'role assignment create --assignee-object-id "${DATA_PRINCIPAL}"',
        "functionapp create",
        "federated-credential create",
        "-m deploy.package",
        "config-zip",
        "event-subscription create",
    ]
    assert_valid_bash_in_order(lines, order)


def test_identity_not_keys_and_event_grid_on_uploads() -> None:
    text = "\n".join(dry_run())
    assert "--allow-shared-key-access false" in text
    assert "AccountKey" not in text and "connection-string" not in text
    assert "--flexconsumption-location" in text and "[system]" not in text
    assert "signed-in-user" in text and "az ad sp show" in text, "a user and a service principal both work"
    grid = next(line for line in text.splitlines() if "event-subscription create" in line)
    assert "functionName=Host.Functions.on_upload" in grid
    assert "--included-event-types Microsoft.Storage.BlobCreated" in grid
    assert "--subject-begins-with /blobServices/default/containers/grayscale/blobs/uploads/" in grid
    for role in re.findall(r"--role '([^']+)'", text):
        assert role.startswith("Storage "), f"{role} is wider than the storage account needs"


def test_two_identities_each_on_its_own_stores_only() -> None:
    """The host's identity touches only the host's account (keys, leases, package); the code's only the data
    container and the app's queues. Nobody but the deployer holds a data role on the whole data account."""
    lines = dry_run()
    text = "\n".join(lines)
    roles = re.findall(r'--assignee-object-id "\$\{(\w+)\}" --assignee-principal-type \S+ --role \'([^\']+)\' '
                       r'--scope "([^"]+)"', text)  # fmt: skip
    host = {(role, scope) for who, role, scope in roles if who == "HOST_PRINCIPAL"}
    data = {(role, scope) for who, role, scope in roles if who == "DATA_PRINCIPAL"}
    assert host == {
        (r, "${HOST_STORAGE_ID}")
        for r in ("Storage Blob Data Owner", "Storage Queue Data Contributor", "Storage Table Data Contributor")
    }
    queues = ("grayscale-jobs", "grayscale-jobs-poison", "migrate-batches", "migrate-batches-poison",
              "webjobs-blobtrigger-poison")  # fmt: skip
    assert data == {("Storage Blob Data Contributor", "${STORAGE_ID}/blobServices/default/containers/grayscale")} | {
        ("Storage Queue Data Contributor", f"${{STORAGE_ID}}/queueServices/default/queues/{q}") for q in queues
    }
    writer = {(role, scope) for who, role, scope in roles if who == "WRITER_PRINCIPAL"}
    assert writer == {
        ("Storage Blob Data Contributor", "${STORAGE_ID}/blobServices/default/containers/grayscale"),
        ("Storage Blob Delegator", "${STORAGE_ID}"),
        ("Storage Queue Data Message Sender", "${STORAGE_ID}/queueServices/default/queues/grayscale-jobs"),
    }
    on_whole_account = {
        who for who, role, scope in roles if scope == "${STORAGE_ID}" and role != "Storage Blob Delegator"
    }
    assert on_whole_account == {"DEPLOYER"}
    for queue in queues:  # a role scoped to the queues cannot make one: the deployer makes them all
        assert f"az storage queue create --name {queue} " in text
    create = next(x for x in lines if "functionapp create" in x)
    assert '--assign-identity "${HOST_IDENTITY_ID}" "${DATA_IDENTITY_ID}"' in create
    assert "--storage-account sa1host" in create and '--deployment-storage-auth-value "${HOST_IDENTITY_ID}"' in create
    settings = next(x for x in lines if "appsettings set" in x)
    for expected in ("AzureWebJobsStorage__accountName=sa1host", "AzureWebJobsStorage__credential=managedidentity",
                     '"AzureWebJobsStorage__clientId=${HOST_CLIENT_ID}"', "DataStorage__accountName=sa1",
                     "DataStorage__credential=managedidentity", '"DataStorage__clientId=${DATA_CLIENT_ID}"',
                     '"AZURE_CLIENT_ID=${DATA_CLIENT_ID}"'):  # fmt: skip
        assert expected in settings, expected


def test_teardown_names_every_resource_the_deploy_creates() -> None:
    out = "\n".join(dry_run("--teardown"))
    subprocess.run(["bash", "-n"], input=out, text=True, check=True)
    deploy = "\n".join(dry_run())
    assert (
        "event-subscription create --name on-upload" in deploy and "event-subscription delete --name on-upload" in out
    )
    assert "functionapp create --name app1" in deploy and "functionapp delete --name app1" in out
    assert "storage account create --name sa1" in deploy and "storage account delete --name sa1" in out
    assert "storage account create --name sa1host" in deploy and "storage account delete --name sa1host" in out
    for identity in ("app1-host", "app1-data", "app1-gcp-writer"):
        assert f"identity create --name {identity}" in deploy and f"identity delete --name {identity}" in out
    assert deploy.count("role assignment create") >= 2 and out.count("role assignment delete") >= 2
    assert "group delete" not in out, "the resource group may hold other things: it stays"


def test_fresh_subscription_steps_and_the_cross_cloud_identity() -> None:
    lines = dry_run()
    text = "\n".join(lines)
    assert "az provider register --namespace Microsoft.EventGrid --wait" in text
    assert re.search(r"retry .* az storage container create", text), "the deployer's new role is waited for"
    assert re.search(r"BLOBS_KEY=\$\(retry .* nonempty az functionapp keys list", text)
    assert (
        "--issuer https://accounts.google.com --subject 1098765432101234 --audiences api://AzureADTokenExchange" in text
    )
    writer = [x for x in lines if '--assignee-object-id "${WRITER_PRINCIPAL}"' in x]
    assert any(
        "'Storage Blob Data Contributor' --scope \"${STORAGE_ID}/blobServices/default/containers/grayscale\"" in x
        for x in writer
    ), "the writer may write to the container only"
    assert any("'Storage Blob Delegator' --scope \"${STORAGE_ID}\"" in x for x in writer)
    assert "GCP_SERVICE_ACCOUNT=gray-reader@proj-1.iam.gserviceaccount.com" in text
    teardown = "\n".join(dry_run("--teardown"))
    assert "identity delete --name app1-gcp-writer" in teardown and "federated-credential delete" in teardown


def test_the_zip_holds_the_app_and_nothing_else() -> None:
    from deploy.package import included

    files = included()
    assert {"function_app.py", "host.json", "requirements.txt"} <= set(files)
    assert any(f.startswith("core/") for f in files) and any(f.startswith("functions_azure/") for f in files)
    tops = {f.split("/")[0] for f in files}
    assert not tops & {"tests", "deploy", "devstack", "functions_gcp", "main.py", ".venv", ".git", "bench"}
    # The local host is not part of the app; the app's modules are.
    assert not [f for f in files if f.startswith("functions_azure/devhost")]
    assert {"functions_azure/blueprint.py", "functions_azure/migration.py", "functions_azure/services.py"} <= set(files)
