"""Deploy the function app to Azure with az and func, in order; ``--dry-run`` prints the commands.

    python deploy/azure.py --resource-group RG --storage-account SA --app APP [--location westeurope] [--dry-run]

In order:
 1. the resource group;
 2. the storage account (no shared-key access, no public blobs), the container and
    the queues ``grayscale-jobs`` and ``grayscale-jobs-poison``;
 3. a Flex Consumption function app (Python 3.11) with a system-assigned managed identity;
 4. role assignments for that identity on the account only: Storage Blob Data Owner
    (the host keeps its leases and state in blobs) and Storage Queue Data Contributor;
    no account key in the app settings: ``AzureWebJobsStorage__accountName`` and
    ``AZURE_STORAGE_ACCOUNT_URL`` use the identity;
 5. ``func azure functionapp publish``;
 6. the Event Grid subscription that drives the blob trigger: the blobs extension
    webhook, BlobCreated only, subject filter on ``uploads/``;
 7. a check that every function of function_app.py is deployed.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# Replace this script's folder on the path: its name (azure.py) would shadow the azure package.
sys.path[0] = str(ROOT)

from deploy import shell  # noqa: E402
from functions_azure.settings import (  # noqa: E402
    CONNECTION,
    CONTAINER_SETTING,
    DEFAULT_CONTAINER,
    JOBS_QUEUE,
    POISON_QUEUE,
)
from migrate.fanout import BATCH_QUEUE  # noqa: E402


def function_names() -> list[str]:
    """The functions of function_app.py, as the host sees them."""
    import function_app

    return [f.get_function_name() for f in function_app.app.get_functions()]


@dataclass(frozen=True)
class Plan:
    resource_group: str
    storage_account: str
    app: str
    location: str
    container: str
    functions: list[str]

    def commands(self) -> list[list[str]]:
        rg, sa, app = ["--resource-group", self.resource_group], self.storage_account, self.app
        login = ["--account-name", sa, "--auth-mode", "login"]
        subject = f"/blobServices/default/containers/{self.container}/blobs/uploads/"
        run: list[list[str]] = [
            ["az", "group", "create", "--name", self.resource_group, "--location", self.location],
            ["az", "storage", "account", "create", "--name", sa, *rg, "--location", self.location,
             "--sku", "Standard_LRS", "--kind", "StorageV2", "--min-tls-version", "TLS1_2",
             "--allow-blob-public-access", "false", "--allow-shared-key-access", "false"],
            [f"STORAGE_ID=$(az storage account show --name {sa} --resource-group {self.resource_group} "
             "--query id --output tsv)"],
            ["az", "role", "assignment", "create", "--assignee", "${DEPLOYER}",
             "--role", "Storage Blob Data Contributor", "--scope", "${STORAGE_ID}"],
            ["az", "role", "assignment", "create", "--assignee", "${DEPLOYER}",
             "--role", "Storage Queue Data Contributor", "--scope", "${STORAGE_ID}"],
            ["az", "storage", "container", "create", "--name", self.container, *login],
            ["az", "storage", "queue", "create", "--name", JOBS_QUEUE, *login],
            ["az", "storage", "queue", "create", "--name", POISON_QUEUE, *login],
            ["az", "storage", "queue", "create", "--name", BATCH_QUEUE, *login],
            ["az", "storage", "queue", "create", "--name", f"{BATCH_QUEUE}-poison", *login],
            ["az", "functionapp", "create", "--name", app, *rg, "--storage-account", sa,
             "--flexconsumption-location", self.location, "--runtime", "python", "--runtime-version", "3.11",
             "--assign-identity", "[system]", "--deployment-storage-auth-type", "SystemAssignedIdentity"],
            [f"PRINCIPAL=$(az functionapp identity show --name {app} --resource-group {self.resource_group} "
             "--query principalId --output tsv)"],
            ["az", "role", "assignment", "create", "--assignee-object-id", "${PRINCIPAL}",
             "--assignee-principal-type", "ServicePrincipal", "--role", "Storage Blob Data Owner",
             "--scope", "${STORAGE_ID}"],
            ["az", "role", "assignment", "create", "--assignee-object-id", "${PRINCIPAL}",
             "--assignee-principal-type", "ServicePrincipal", "--role", "Storage Queue Data Contributor",
             "--scope", "${STORAGE_ID}"],
            ["az", "functionapp", "config", "appsettings", "set", "--name", app, *rg, "--settings",
             f"{CONNECTION}__accountName={sa}",
             f"AZURE_STORAGE_ACCOUNT_URL=https://{sa}.blob.core.windows.net",
             f"{CONTAINER_SETTING}={self.container}"],
            ["az", "functionapp", "config", "appsettings", "delete", "--name", app, *rg,
             "--setting-names", CONNECTION],
            ["func", "azure", "functionapp", "publish", app, "--python"],
            [f"HOST_NAME=$(az functionapp show --name {app} --resource-group {self.resource_group} "
             "--query defaultHostName --output tsv)"],
            [f"BLOBS_KEY=$(az functionapp keys list --name {app} --resource-group {self.resource_group} "
             "--query systemKeys.blobs_extension --output tsv)"],
            ["az", "eventgrid", "event-subscription", "create", "--name", "on-upload",
             "--source-resource-id", "${STORAGE_ID}", "--endpoint-type", "webhook",
             "--endpoint", "https://${HOST_NAME}/runtime/webhooks/blobs?functionName=Host.Functions.on_upload"
             "&code=${BLOBS_KEY}",
             "--included-event-types", "Microsoft.Storage.BlobCreated", "--subject-begins-with", subject],
        ]  # fmt: skip
        for name in self.functions:
            run.append(["az", "functionapp", "function", "show", "--name", app, *rg, "--function-name", name,
                        "--query", "name", "--output", "tsv"])  # fmt: skip
        return run


def teardown_commands(plan: Plan) -> list[list[str]]:
    """Remove what ``commands`` created, in reverse order, and nothing else.

    The resource group stays: it may hold other things (``az group delete`` is yours
    to run if the deploy made it for this app alone). The storage account goes with
    its data: this is the decommission step, after the cutover has been verified.
    """
    rg, app = ["--resource-group", plan.resource_group], plan.app
    return [
        [f"STORAGE_ID=$(az storage account show --name {plan.storage_account} --resource-group "
         f"{plan.resource_group} --query id --output tsv)"],
        [f"PRINCIPAL=$(az functionapp identity show --name {app} --resource-group {plan.resource_group} "
         "--query principalId --output tsv)"],
        ["az", "eventgrid", "event-subscription", "delete", "--name", "on-upload",
         "--source-resource-id", "${STORAGE_ID}"],
        ["az", "role", "assignment", "delete", "--assignee", "${PRINCIPAL}", "--scope", "${STORAGE_ID}"],
        ["az", "role", "assignment", "delete", "--assignee", "${DEPLOYER}", "--scope", "${STORAGE_ID}"],
        ["az", "functionapp", "delete", "--name", app, *rg],
        ["az", "storage", "account", "delete", "--name", plan.storage_account, *rg, "--yes"],
    ]  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--resource-group", required=True)
    parser.add_argument("--storage-account", required=True)
    parser.add_argument("--app", required=True)
    parser.add_argument("--location", default="westeurope")
    parser.add_argument("--container", default=DEFAULT_CONTAINER)
    parser.add_argument("--dry-run", action="store_true", help="print the commands instead of running them")
    parser.add_argument("--teardown", action="store_true", help="remove everything the deploy created")
    args = parser.parse_args(argv)
    plan = Plan(args.resource_group, args.storage_account, args.app, args.location, args.container, function_names())
    commands = teardown_commands(plan) if args.teardown else plan.commands()
    return shell.run(
        commands, dry_run=args.dry_run, header="DEPLOYER=$(az ad signed-in-user show --query id --output tsv)\n"
    )


if __name__ == "__main__":
    sys.exit(main())
