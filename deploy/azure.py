"""Deploy the function app to Azure with az, in order; ``--dry-run`` prints the commands.

    python deploy/azure.py --resource-group RG --storage-account SA --app APP [--location westeurope]
                           [--gcp-project-number N --gcp-wif-provider P --gcp-reader-sa EMAIL
                            --gcp-runtime-sa-id ID] [--dry-run] [--teardown]
    python deploy/azure.py --check --api URL [--function-key KEY]   # smoke-test a deployment

Every step is safe to run twice. Role assignments take up to 30 minutes to
apply, so the first command that needs one is retried, bounded, saying what it
waits for. It works for a user and for a service principal (CI). The last line
printed is one JSON object with the ids GCP needs (``deploy/gcp.py --azure-...``).

In order:
 1. the resource providers (Event Grid, Web, Storage, Managed Identity) registered;
 2. the resource group;
 3. the storage account (no shared-key access, no public blobs), the container and the
    queues ``grayscale-jobs``, ``migrate-batches`` and their ``-poison`` queues, made by
    the deployer's identity (Blob and Queue Data Contributor on the account);
 4. a Flex Consumption function app (Python 3.11) with two user-assigned identities, and no
    account key in any setting:
    - ``<app>-host``, the host's (``AzureWebJobsStorage__credential``/``__clientId``): Blob, Queue
      and Table Data roles on a host storage account of its own (``--host-storage-account``,
      default ``<sa>host``), which also holds the deployment package and the host's keys;
    - ``<app>-data``, the code's and the triggers' (the ``DataStorage`` connection,
      ``AZURE_CLIENT_ID``): Storage Blob Data Contributor on the data container and Storage
      Queue Data Contributor on the app's queues only. With the GCP ids it reads GCS through
      Workload Identity Federation (``GCP_WORKLOAD_IDENTITY_PROVIDER``, ``GCP_SERVICE_ACCOUNT``).
    This stops a confused deputy (the code cannot be pointed at the host's keys or package), not
    code execution: code can ask for any identity assigned to the app;
 5. the user-assigned identity ``<app>-gcp-writer`` that GCP's migration functions write as:
    Storage Blob Data Contributor on the container only, Storage Blob Delegator on the
    account (for the user-delegation SAS), and with ``--gcp-runtime-sa-id`` a federated
    credential (issuer ``https://accounts.google.com``, subject that service account's id);
 6. the code, as a zip built from ``.funcignore`` (``config-zip`` ignores that file),
    published with ``az functionapp deployment source config-zip`` and a remote build;
 7. the Event Grid subscription that drives the blob trigger: the blobs extension
    webhook (its key is waited for: the host makes it when it first starts),
    BlobCreated only, subject filter on ``uploads/``;
 8. a check that every function of function_app.py is deployed.
"""

from __future__ import annotations

import argparse
import re
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# Replace this script's folder on the path: its name (azure.py) would shadow the azure package.
sys.path[0] = str(ROOT)

from deploy import shell  # noqa: E402
from functions_azure.settings import (  # noqa: E402
    BATCH_QUEUE,
    CONNECTION,
    CONTAINER_SETTING,
    DEFAULT_CONTAINER,
    HOST_CONNECTION,
    JOBS_QUEUE,
    POISON_QUEUE,
)

QUEUES = (JOBS_QUEUE, POISON_QUEUE, BATCH_QUEUE, f"{BATCH_QUEUE}-poison", "webjobs-blobtrigger-poison")
"""Every queue the app reads or writes, on the data account: the data identity's queue role is scoped to each, so
none could be made on first use (the blob trigger's poison queue included)."""


def function_names() -> list[str]:
    """The functions of function_app.py, as the host sees them."""
    import function_app

    return [f.get_function_name() for f in function_app.app.get_functions()]


ZIP = ".dist/function-app.zip"
PROVIDERS = ["Microsoft.EventGrid", "Microsoft.Web", "Microsoft.Storage", "Microsoft.ManagedIdentity"]
TOKEN_EXCHANGE_AUDIENCE = "api://AzureADTokenExchange"
MIGRATION_HTTP_FUNCTIONS = (
    "api_migrations", "api_migration_check", "api_migration_list", "api_migration_status", "api_migration_step",
)  # fmt: skip
"""The migration control plane's functions (FUNCTION level): opened by the operators' keys, never the page's."""


def assign_role(assignee: str, kind: str, role: str, scope: str) -> list[str]:
    """``az role assignment create`` for an object id (safe to run twice: an existing one is returned)."""
    return ["az", "role", "assignment", "create", "--assignee-object-id", assignee,
            "--assignee-principal-type", kind, "--role", role, "--scope", scope]  # fmt: skip


@dataclass(frozen=True)
class GcpIds:
    """What Azure needs to know of the GCP side (``deploy/gcp.py`` prints it)."""

    project_number: str = ""
    wif_provider: str = ""
    reader_sa: str = ""
    runtime_sa_id: str = ""
    bucket: str = ""
    """The GCS bucket the migration API may migrate (``MIGRATE_SOURCES``); none without it."""


@dataclass(frozen=True)
class Plan:
    resource_group: str
    storage_account: str
    app: str
    location: str
    container: str
    functions: list[str]
    gcp: GcpIds = GcpIds()
    operators: tuple[str, ...] = ()
    """Who gets a key of their own to the migration functions (``--operator``)."""
    host_storage_account: str = ""
    """The host's own account (keys, leases, the deployment package); default ``<storage_account>host``."""

    @property
    def host_account(self) -> str:
        return self.host_storage_account or f"{self.storage_account}host"[:24]

    @property
    def host_identity(self) -> str:
        """The host's user-assigned identity: the host storage account only."""
        return f"{self.app}-host"

    @property
    def data_identity(self) -> str:
        """The code's and the triggers' user-assigned identity: the data container and the app's queues only."""
        return f"{self.app}-data"

    @property
    def writer(self) -> str:
        """The user-assigned identity that GCP's migration functions write to Azure as."""
        return f"{self.app}-gcp-writer"

    def settings(self) -> list[str]:
        found = [
            f"{HOST_CONNECTION}__accountName={self.host_account}",
            f"{HOST_CONNECTION}__credential=managedidentity",
            f"{HOST_CONNECTION}__clientId=${{HOST_CLIENT_ID}}",
            f"{CONNECTION}__accountName={self.storage_account}",
            f"{CONNECTION}__credential=managedidentity",
            f"{CONNECTION}__clientId=${{DATA_CLIENT_ID}}",
            "AZURE_CLIENT_ID=${DATA_CLIENT_ID}",  # the code's own clients (DefaultAzureCredential) use the same one
            f"AZURE_STORAGE_ACCOUNT_URL=https://{self.storage_account}.blob.core.windows.net",
            f"{CONTAINER_SETTING}={self.container}",
        ]
        if self.gcp.wif_provider and self.gcp.reader_sa:
            found += [f"GCP_WORKLOAD_IDENTITY_PROVIDER={self.gcp.wif_provider}",
                      f"GCP_SERVICE_ACCOUNT={self.gcp.reader_sa}"]  # fmt: skip
        if self.gcp.project_number:
            found.append(f"GOOGLE_CLOUD_PROJECT={self.gcp.project_number}")
        if self.gcp.bucket:
            found.append(f"MIGRATE_SOURCES={self.gcp.bucket}")
        return found

    def _identity(self, name: str, var: str) -> list[list[str]]:
        """Make a user-assigned identity; ``${VAR_IDENTITY_ID}``, ``${VAR_CLIENT_ID}`` and ``${VAR_PRINCIPAL}``."""
        rg = ["--resource-group", self.resource_group]
        return [
            ["az", "identity", "create", "--name", name, *rg, "--location", self.location],
            *(shell.assign(f"{var}_{suffix}", ["az", "identity", "show", "--name", name, *rg, "--query", field,
                                               "--output", "tsv"])
              for suffix, field in (("IDENTITY_ID", "id"), ("CLIENT_ID", "clientId"), ("PRINCIPAL", "principalId"))),
        ]  # fmt: skip

    def commands(self) -> list[list[str]]:
        rg, sa, app = ["--resource-group", self.resource_group], self.storage_account, self.app
        login = ["--account-name", sa, "--auth-mode", "login"]
        subject = f"/blobServices/default/containers/{self.container}/blobs/uploads/"
        container_scope = f"${{STORAGE_ID}}/blobServices/default/containers/{self.container}"
        waits = "the data roles of the deployer on the storage account"
        run: list[list[str]] = [
            *(["az", "provider", "register", "--namespace", name, "--wait"] for name in PROVIDERS),
            shell.assign("DEPLOYER_TYPE", ["az", "account", "show", "--query", "user.type", "--output", "tsv"]),
            # A user has a signed-in-user object; a service principal (CI) has none, but is an sp.
            ['DEPLOYER=$(if [ "${DEPLOYER_TYPE}" = servicePrincipal ]; then az ad sp show --id '
             '"$(az account show --query user.name --output tsv)" --query id --output tsv; '
             "else az ad signed-in-user show --query id --output tsv; fi)"],
            ['DEPLOYER_KIND=$(if [ "${DEPLOYER_TYPE}" = servicePrincipal ]; then echo ServicePrincipal; '
             "else echo User; fi)"],
            ["az", "group", "create", "--name", self.resource_group, "--location", self.location],
            ["az", "storage", "account", "create", "--name", sa, *rg, "--location", self.location,
             "--sku", "Standard_LRS", "--kind", "StorageV2", "--min-tls-version", "TLS1_2",
             "--allow-blob-public-access", "false", "--allow-shared-key-access", "false"],
            shell.assign("STORAGE_ID", ["az", "storage", "account", "show", "--name", sa, *rg, "--query", "id",
                                        "--output", "tsv"]),
            assign_role("${DEPLOYER}", "${DEPLOYER_KIND}", "Storage Blob Data Contributor", "${STORAGE_ID}"),
            assign_role("${DEPLOYER}", "${DEPLOYER_KIND}", "Storage Queue Data Contributor", "${STORAGE_ID}"),
            shell.retry(waits, ["az", "storage", "container", "create", "--name", self.container, *login]),
            # Every queue the app uses, the poison ones too: a role scoped to the queues cannot create one.
            *(shell.retry(waits, ["az", "storage", "queue", "create", "--name", queue, *login]) for queue in QUEUES),
            # The host's account: its keys, leases and the deployment package, apart from the data.
            ["az", "storage", "account", "create", "--name", self.host_account, *rg, "--location", self.location,
             "--sku", "Standard_LRS", "--kind", "StorageV2", "--min-tls-version", "TLS1_2",
             "--allow-blob-public-access", "false", "--allow-shared-key-access", "false"],
            shell.assign("HOST_STORAGE_ID", ["az", "storage", "account", "show", "--name", self.host_account, *rg,
                                             "--query", "id", "--output", "tsv"]),
            *self._identity(self.host_identity, "HOST"),
            *self._identity(self.data_identity, "DATA"),
            *(assign_role("${HOST_PRINCIPAL}", "ServicePrincipal", role, "${HOST_STORAGE_ID}")
              for role in ("Storage Blob Data Owner", "Storage Queue Data Contributor",
                           "Storage Table Data Contributor")),
            assign_role("${DATA_PRINCIPAL}", "ServicePrincipal", "Storage Blob Data Contributor", container_scope),
            *(assign_role("${DATA_PRINCIPAL}", "ServicePrincipal", "Storage Queue Data Contributor",
                          f"${{STORAGE_ID}}/queueServices/default/queues/{queue}") for queue in QUEUES),
            shell.ensure(["az", "functionapp", "show", "--name", app, *rg],
                         ["az", "functionapp", "create", "--name", app, *rg, "--storage-account", self.host_account,
                          "--flexconsumption-location", self.location, "--runtime", "python",
                          "--runtime-version", "3.11", "--assign-identity", "${HOST_IDENTITY_ID}",
                          "${DATA_IDENTITY_ID}", "--deployment-storage-name", self.host_account,
                          "--deployment-storage-auth-type", "UserAssignedIdentity",
                          "--deployment-storage-auth-value", "${HOST_IDENTITY_ID}"]),
            ["az", "identity", "create", "--name", self.writer, *rg, "--location", self.location],
            shell.assign("WRITER_CLIENT_ID", ["az", "identity", "show", "--name", self.writer, *rg,
                                              "--query", "clientId", "--output", "tsv"]),
            shell.assign("WRITER_PRINCIPAL", ["az", "identity", "show", "--name", self.writer, *rg,
                                              "--query", "principalId", "--output", "tsv"]),
            assign_role("${WRITER_PRINCIPAL}", "ServicePrincipal", "Storage Blob Data Contributor", container_scope),
            assign_role("${WRITER_PRINCIPAL}", "ServicePrincipal", "Storage Blob Delegator", "${STORAGE_ID}"),
            # The cutover and rollback run as GCP tasks (POST /migrations/{run}/{step}): the switch hands Azure the
            # uploads left for it, one message each on its jobs queue. Send only, on that queue only.
            assign_role("${WRITER_PRINCIPAL}", "ServicePrincipal", "Storage Queue Data Message Sender",
                        f"${{STORAGE_ID}}/queueServices/default/queues/{JOBS_QUEUE}"),
        ]  # fmt: skip
        if self.gcp.runtime_sa_id:
            run.append(["az", "identity", "federated-credential", "create", "--name", "gcp-runtime",
                        "--identity-name", self.writer, *rg, "--issuer", "https://accounts.google.com",
                        "--subject", self.gcp.runtime_sa_id, "--audiences", TOKEN_EXCHANGE_AUDIENCE])  # fmt: skip
        run += [
            ["az", "functionapp", "config", "appsettings", "set", "--name", app, *rg, "--settings", *self.settings()],
            # functionapp create wrote the host's connection as a string with the account key: the identity replaces it.
            ["az", "functionapp", "config", "appsettings", "delete", "--name", app, *rg,
             "--setting-names", HOST_CONNECTION],
            ['"${PYTHON:-python3}" -m deploy.package ' + ZIP],
            shell.retry("the roles of the app on the storage account (publish)",
                        ["az", "functionapp", "deployment", "source", "config-zip", "--name", app, *rg,
                         "--src", ZIP, "--build-remote", "true"]),
            shell.assign("HOST_NAME", ["az", "functionapp", "show", "--name", app, *rg,
                                       "--query", "defaultHostName", "--output", "tsv"]),
            shell.assign("BLOBS_KEY", shell.retry(
                "the blobs_extension key (the host makes it when it first starts)",
                ["nonempty", "az", "functionapp", "keys", "list", "--name", app, *rg,
                 "--query", "systemKeys.blobs_extension", "--output", "tsv"])),
            ["az", "eventgrid", "event-subscription", "create", "--name", "on-upload",
             "--source-resource-id", "${STORAGE_ID}", "--endpoint-type", "webhook",
             "--endpoint", "https://${HOST_NAME}/runtime/webhooks/blobs?functionName=Host.Functions.on_upload"
             "&code=${BLOBS_KEY}",
             "--included-event-types", "Microsoft.Storage.BlobCreated", "--subject-begins-with", subject],
        ]  # fmt: skip
        for name in self.functions:
            run.append(["az", "functionapp", "function", "show", "--name", app, *rg, "--function-name", name,
                        "--query", "name", "--output", "tsv"])  # fmt: skip
        # Each operator gets a key of their own on the migration functions only (Azure makes the value): it opens no
        # pipeline route, the page's key opens no migration route, and one key is revoked without the others.
        for operator in self.operators:
            for name in MIGRATION_HTTP_FUNCTIONS:
                run.append(["az", "functionapp", "function", "keys", "set", "--name", app, *rg,
                            "--function-name", name, "--key-name", operator, "--output", "none"])  # fmt: skip
        run.append(shell.assign("TENANT_ID", ["az", "account", "show", "--query", "tenantId", "--output", "tsv"]))
        run.append(shell.emit_ids({
            "azure_tenant_id": "${TENANT_ID}", "azure_client_id": "${WRITER_CLIENT_ID}",
            "azure_principal_id": "${DATA_PRINCIPAL}", "azure_storage_account": sa,
            "azure_container": self.container,
        }))  # fmt: skip
        return run


def teardown_commands(plan: Plan) -> list[list[str]]:
    """Remove what ``commands`` created, in reverse order, and nothing else.

    The resource group stays: it may hold other things (``az group delete`` is yours
    to run if the deploy made it for this app alone). The storage account goes with
    its data: this is the decommission step, after the cutover has been verified.
    Role assignments on the account go with it; the deployer's are removed first.
    """
    rg, app = ["--resource-group", plan.resource_group], plan.app
    return [
        shell.assign("STORAGE_ID", ["az", "storage", "account", "show", "--name", plan.storage_account, *rg,
                                    "--query", "id", "--output", "tsv"]),
        shell.assign("HOST_STORAGE_ID", ["az", "storage", "account", "show", "--name", plan.host_account, *rg,
                                         "--query", "id", "--output", "tsv"]),
        shell.assign("DATA_PRINCIPAL", ["az", "identity", "show", "--name", plan.data_identity, *rg,
                                        "--query", "principalId", "--output", "tsv"]),
        shell.assign("WRITER_PRINCIPAL", ["az", "identity", "show", "--name", plan.writer, *rg,
                                          "--query", "principalId", "--output", "tsv"]),
        ["az", "eventgrid", "event-subscription", "delete", "--name", "on-upload",
         "--source-resource-id", "${STORAGE_ID}"],
        *(["az", "role", "assignment", "delete", "--assignee", "${DATA_PRINCIPAL}", "--scope", scope]
          for scope in (f"${{STORAGE_ID}}/blobServices/default/containers/{plan.container}",
                        *(f"${{STORAGE_ID}}/queueServices/default/queues/{queue}" for queue in QUEUES))),
        ["az", "role", "assignment", "delete", "--assignee", "${WRITER_PRINCIPAL}", "--scope", "${STORAGE_ID}"],
        ["az", "role", "assignment", "delete", "--assignee", "${WRITER_PRINCIPAL}", "--scope",
         f"${{STORAGE_ID}}/blobServices/default/containers/{plan.container}"],
        ["az", "identity", "federated-credential", "delete", "--name", "gcp-runtime", "--identity-name", plan.writer,
         *rg, "--yes"],
        ["az", "identity", "delete", "--name", plan.writer, *rg],
        ["az", "functionapp", "delete", "--name", app, *rg],
        ["az", "identity", "delete", "--name", plan.data_identity, *rg],
        ["az", "identity", "delete", "--name", plan.host_identity, *rg],
        ["az", "storage", "account", "delete", "--name", plan.host_account, *rg, "--yes"],
        ["az", "storage", "account", "delete", "--name", plan.storage_account, *rg, "--yes"],
    ]  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--resource-group")
    parser.add_argument("--storage-account")
    parser.add_argument("--app")
    parser.add_argument("--location", default="westeurope")
    parser.add_argument("--container", default=DEFAULT_CONTAINER)
    gcp = parser.add_argument_group("cross-cloud identity (the ids deploy/gcp.py prints)")
    gcp.add_argument("--gcp-project-number")
    gcp.add_argument("--gcp-wif-provider", help="projects/N/locations/global/workloadIdentityPools/P/providers/X")
    gcp.add_argument("--gcp-reader-sa", help="the service account that may read the source bucket")
    gcp.add_argument("--gcp-runtime-sa-id", help="unique id of the GCP functions' runtime service account")
    gcp.add_argument("--gcs-bucket", help="the bucket the migration API may migrate here (MIGRATE_SOURCES)")
    parser.add_argument("--host-storage-account", help="the host's own account (default: <storage-account>host)")
    parser.add_argument("--operator", action="append", default=[], metavar="NAME",
                        help="make NAME a key of its own on each migration function (repeatable)")  # fmt: skip
    parser.add_argument("--dry-run", action="store_true", help="print the commands instead of running them")
    parser.add_argument("--teardown", action="store_true", help="remove everything the deploy created")
    parser.add_argument("--check", action="store_true", help="smoke-test the deployment at --api")
    parser.add_argument("--api", help="with --check: the API's base URL (https://APP.azurewebsites.net/api)")
    parser.add_argument("--function-key", help="with --check: the key of api_upload (default $AZURE_FUNCTION_KEY)")
    parser.add_argument("--stack", help="with --check: read the API URL and storage from this stack file")
    args = parser.parse_args(argv)
    if args.check:
        from deploy import smoke

        return smoke.main_for("azure", api=args.api, stack=args.stack, function_key=args.function_key)
    if not (args.resource_group and args.storage_account and args.app):
        parser.error("--resource-group, --storage-account and --app are required (or --check --api URL)")
    ids = GcpIds(args.gcp_project_number or "", args.gcp_wif_provider or "", args.gcp_reader_sa or "",
                 args.gcp_runtime_sa_id or "", args.gcs_bucket or "")  # fmt: skip
    for operator in args.operator:
        if not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", operator):
            parser.error(f"--operator must be letters, digits, '-' or '_' (a key name), not {operator!r}")
    plan = Plan(args.resource_group, args.storage_account, args.app, args.location, args.container,
                function_names(), ids, tuple(args.operator), args.host_storage_account or "")  # fmt: skip
    commands = teardown_commands(plan) if args.teardown else plan.commands()
    return shell.run(commands, dry_run=args.dry_run)


if __name__ == "__main__":
    sys.exit(main())
