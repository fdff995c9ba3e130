"""Deploy the pipeline to Google Cloud with gcloud, in order; ``--dry-run`` prints the commands.

    python deploy/gcp.py --project P --bucket B [--region europe-west1] [--trigger notification|eventarc]
                         [--azure-tenant-id T --azure-client-id C --azure-storage-account SA --azure-container CT
                          --azure-principal-id ID] [--public-api] [--rollback-writer MEMBER] [--dry-run] [--teardown]
    python deploy/gcp.py --check --api URL          # smoke-test a deployment (deploy/smoke.py)

Every step is safe to run twice (a create runs only where the resource is
missing), so the cross-cloud order works: gcp.py, then azure.py with the ids
this prints, then gcp.py again with the Azure ids. The last line printed is one
JSON object with the ids the other cloud needs.

What it creates, in order:
 1. the APIs it needs (IAM Credentials and STS for the cross-cloud identity);
 2. four service accounts: ``gray-runtime`` (what the functions run as), ``gray-invoker``
    (what Pub/Sub and Eventarc call them as), ``gray-build`` (what Cloud Build builds them
    as: a new project's default build account may lack the permission) and
    ``gray-reader`` (what Azure impersonates to read the bucket, nothing else);
 3. the bucket (uniform access): ``gray-runtime`` object user on it only, ``gray-reader``
    object viewer on it only, and allowed to sign URLs for itself (server-side copies);
    with ``--rollback-writer MEMBER`` (an opt-in, e.g. ``user:ops@example.com``), that one
    identity is object user on the bucket too: ``python -m migrate rollback`` writes there;
 4. the GCS service agent, made to exist (``gcloud storage service-agent``) before it is bound;
 5. the topics ``gcs-notifications``, ``grayscale-jobs``, ``grayscale-jobs-dead``,
    ``migrate-batches`` and ``migrate-batches-dead``, ``gray-runtime`` allowed to publish to
    ``grayscale-jobs`` and ``migrate-batches`` only;
 6. the upload trigger: a bucket notification (OBJECT_FINALIZE under ``uploads/``)
    on ``gcs-notifications``, or with ``--trigger eventarc`` a direct Eventarc trigger;
 7. the six functions (gen2, python312, built by ``gray-build``, ``--retry`` on the event ones);
    with the Azure ids, the migration functions and the API get ``AZURE_TENANT_ID``,
    ``AZURE_CLIENT_ID`` and ``AZURE_STORAGE_ACCOUNT_URL``: they write to Azure as the
    user-assigned managed identity whose federated credential trusts ``gray-runtime``;
 8. the dead-letter policies (5 attempts) on the ``process_job`` and ``migrate_batch``
    subscriptions, with the IAM the Pub/Sub service agent needs for them (and Token
    Creator, which projects made before April 2021 need for authenticated push);
 9. ``gray-invoker`` as the only invoker of the event functions. The API is deployed
    ``--no-allow-unauthenticated`` (callers need ``roles/run.invoker``), or public with
    ``--public-api`` (anyone may upload up to ``GRAYSCALE_MAX_UPLOAD_BYTES``);
10. with ``--azure-tenant-id``: the workload identity pool ``gray-azure`` and its OIDC
    provider ``azure`` for the Entra tenant (audience ``api://AzureADTokenExchange``);
    with ``--azure-principal-id`` too, that managed identity may impersonate ``gray-reader``.
"""

from __future__ import annotations

import argparse
import re
import sys
from dataclasses import dataclass
from pathlib import Path

# This script's folder is on the path; the project root is what the imports need.
sys.path[0] = str(Path(__file__).resolve().parent.parent)

from core import names  # noqa: E402
from deploy import shell  # noqa: E402

NOTIFICATIONS_TOPIC = names.NOTIFICATIONS_TOPIC
JOBS_TOPIC = names.JOBS
DEAD_LETTER_TOPIC = names.JOBS_DEAD_LETTER_TOPIC
BATCH_TOPIC = names.BATCHES
BATCH_DEAD_LETTER_TOPIC = names.BATCHES_DEAD_LETTER_TOPIC
REPLICATION_TOPIC = names.REPLICATION
REPLICATION_DEAD_LETTER_TOPIC = names.REPLICATION_DEAD_LETTER_TOPIC
TOPICS = [NOTIFICATIONS_TOPIC, JOBS_TOPIC, DEAD_LETTER_TOPIC, BATCH_TOPIC, BATCH_DEAD_LETTER_TOPIC, REPLICATION_TOPIC,
          REPLICATION_DEAD_LETTER_TOPIC]  # fmt: skip
DEAD_LETTERS = [("process-job", "JOBS_SUBSCRIPTION", DEAD_LETTER_TOPIC),
                ("migrate-batch", "BATCH_SUBSCRIPTION", BATCH_DEAD_LETTER_TOPIC),
                ("migrate-replicate", "REPLICATION_SUBSCRIPTION", REPLICATION_DEAD_LETTER_TOPIC)]  # fmt: skip
"""(function, shell variable for its subscription, dead-letter topic)."""
MAX_DELIVERY_ATTEMPTS = 5
ACCOUNTS = {
    "gray-runtime": "grayscale functions",
    "gray-invoker": "grayscale invoker",
    "gray-build": "grayscale builds",
    "gray-reader": "grayscale migration reader",
}
POOL, PROVIDER = "gray-azure", "azure"
TOKEN_EXCHANGE_AUDIENCE = "api://AzureADTokenExchange"
TOKEN_EXCHANGE_APP_ID = "fb60f99c-7a34-4190-8149-302f77469936"
"""The application id of Entra's token exchange resource: a managed identity's v2 token for
``api://AzureADTokenExchange`` carries it as ``aud`` (the resource spelled as its id), and STS compares literally."""
GUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
ENTRA_TOKEN_AUDIENCES = (TOKEN_EXCHANGE_APP_ID, TOKEN_EXCHANGE_AUDIENCE)


def entra_issuer(tenant_id: str) -> str:
    """The ``iss`` of a v2 Entra token of this tenant."""
    return f"https://login.microsoftonline.com/{tenant_id}/v2.0"


SOURCE = ".dist/gcp-source"
"""What ``gcloud functions deploy --source`` uploads (``deploy/package.py`` stages it)."""
MIGRATION_FUNCTIONS = {
    "migrations",
    "migrate-batch",
    "migrate-batch-dead",
    "migrate-replicate",
    "migrate-replicate-dead",
}
"""The functions that write to Azure, and so get the Azure identity settings."""
APIS = [
    "cloudfunctions.googleapis.com",
    "run.googleapis.com",
    "cloudbuild.googleapis.com",
    "artifactregistry.googleapis.com",
    "eventarc.googleapis.com",
    "pubsub.googleapis.com",
    "storage.googleapis.com",
    "logging.googleapis.com",
    "iam.googleapis.com",
    "iamcredentials.googleapis.com",
    "sts.googleapis.com",
    "cloudresourcemanager.googleapis.com",
]


MEMBER_KINDS = ("user:", "group:", "serviceAccount:", "principal://", "principalSet://")


@dataclass(frozen=True)
class Function:
    name: str
    entry_point: str
    trigger: list[str]
    memory: str = "512Mi"
    concurrency: int = 8
    """Requests one instance serves at once (gen2; needs a whole CPU). A job needs about 65 MB while it
    renders a 16 MP photo, so 8 fit in 1 GiB; locally functions-framework serves 8 threads (THREADS)."""


@dataclass(frozen=True)
class AzureIds:
    """What GCP needs to know of the Azure side (``deploy/azure.py`` prints it)."""

    tenant_id: str
    client_id: str = ""
    storage_account: str = ""
    container: str = ""
    principal_id: str = ""


@dataclass(frozen=True)
class Plan:
    project: str
    region: str
    bucket: str
    trigger: str
    azure: AzureIds | None = None
    public_api: bool = False
    rollback_writer: str | None = None
    """The one IAM member that may write the bucket from outside GCP: whoever runs a rollback (opt-in)."""

    def sa(self, name: str) -> str:
        return f"{name}@{self.project}.iam.gserviceaccount.com"

    @property
    def runtime_sa(self) -> str:
        return self.sa("gray-runtime")

    @property
    def invoker_sa(self) -> str:
        return self.sa("gray-invoker")

    @property
    def reader_sa(self) -> str:
        return self.sa("gray-reader")

    @property
    def provider_name(self) -> str:
        return f"projects/${{PROJECT_NUMBER}}/locations/global/workloadIdentityPools/{POOL}/providers/{PROVIDER}"

    def functions(self) -> list[Function]:
        if self.trigger == "eventarc":
            upload_trigger = [
                "--trigger-event-filters=type=google.cloud.storage.object.v1.finalized",
                f"--trigger-event-filters=bucket={self.bucket}",
            ]
        else:
            upload_trigger = [f"--trigger-topic={NOTIFICATIONS_TOPIC}"]
        access = "--allow-unauthenticated" if self.public_api else "--no-allow-unauthenticated"
        return [
            Function("on-upload", "on_upload", [*upload_trigger, "--retry"]),
            Function("process-job", "process_job", [f"--trigger-topic={JOBS_TOPIC}", "--retry"], memory="1Gi"),
            Function("on-dead-letter", "on_dead_letter", [f"--trigger-topic={DEAD_LETTER_TOPIC}", "--retry"]),
            Function("api", "api", ["--trigger-http", access], memory="1Gi", concurrency=16),
            # The migration control plane: never public, whatever --public-api says (it can freeze uploads).
            Function("migrations", "migrations", ["--trigger-http", "--no-allow-unauthenticated"], concurrency=16),
            Function(
                "migrate-batch",
                "migrate_batch",
                [f"--trigger-topic={BATCH_TOPIC}", "--retry"],
                memory="1Gi",
                concurrency=2,
            ),  # each batch copies with 32 threads of its own
            Function(
                "migrate-batch-dead",
                "migrate_batch_dead_letter",
                [f"--trigger-topic={BATCH_DEAD_LETTER_TOPIC}", "--retry"],
            ),
            # Live sync: does nothing until `migrate plan --live` writes _cutover/live.json into the bucket.
            Function("migrate-replicate", "migrate_replicate", [f"--trigger-topic={REPLICATION_TOPIC}", "--retry"]),
            Function(
                "migrate-replicate-dead",
                "migrate_replicate_dead_letter",
                [f"--trigger-topic={REPLICATION_DEAD_LETTER_TOPIC}", "--retry"],
            ),
        ]

    def env(self, fn: Function) -> str:
        env = {"GCS_BUCKET": self.bucket, "JOBS_TOPIC": JOBS_TOPIC, "GOOGLE_CLOUD_PROJECT": self.project}
        azure = self.azure
        if azure and azure.client_id and azure.storage_account and fn.name in MIGRATION_FUNCTIONS:
            env.update(
                AZURE_TENANT_ID=azure.tenant_id,
                AZURE_CLIENT_ID=azure.client_id,
                AZURE_STORAGE_ACCOUNT_URL=f"https://{azure.storage_account}.blob.core.windows.net",
            )
            if azure.container:
                env["MIGRATE_CONTAINER"] = azure.container
        return ",".join(f"{k}={v}" for k, v in env.items())

    def commands(self) -> list[list[str]]:
        p = [f"--project={self.project}"]
        runtime, invoker = f"serviceAccount:{self.runtime_sa}", f"serviceAccount:{self.invoker_sa}"
        reader, builder = f"serviceAccount:{self.reader_sa}", f"serviceAccount:{self.sa('gray-build')}"
        pubsub_agent = "serviceAccount:service-${PROJECT_NUMBER}@gcp-sa-pubsub.iam.gserviceaccount.com"
        gcs_agent = "serviceAccount:service-${PROJECT_NUMBER}@gs-project-accounts.iam.gserviceaccount.com"
        run: list[list[str]] = [
            ["gcloud", "services", "enable", *APIS, *p],
            shell.assign("PROJECT_NUMBER", ["gcloud", "projects", "describe", self.project,
                                            "--format=value(projectNumber)"]),
        ]  # fmt: skip
        for name, title in ACCOUNTS.items():
            run.append(shell.ensure(["gcloud", "iam", "service-accounts", "describe", self.sa(name), *p],
                                    ["gcloud", "iam", "service-accounts", "create", name, f"--display-name={title}",
                                     *p]))  # fmt: skip
        run += [
            # A new service account takes a moment to be usable in a policy.
            shell.retry("the new service accounts", ["gcloud", "projects", "add-iam-policy-binding", self.project,
                        f"--member={builder}", "--role=roles/cloudbuild.builds.builder", "--condition=None"]),
            shell.ensure(["gcloud", "storage", "buckets", "describe", f"gs://{self.bucket}", *p],
                         ["gcloud", "storage", "buckets", "create", f"gs://{self.bucket}", f"--location={self.region}",
                          "--uniform-bucket-level-access", *p]),
            ["gcloud", "storage", "buckets", "add-iam-policy-binding", f"gs://{self.bucket}", f"--member={runtime}",
             "--role=roles/storage.objectUser", *p],
            ["gcloud", "storage", "buckets", "add-iam-policy-binding", f"gs://{self.bucket}", f"--member={reader}",
             "--role=roles/storage.objectViewer", *p],
            ["gcloud", "iam", "service-accounts", "add-iam-policy-binding", self.reader_sa, f"--member={reader}",
             "--role=roles/iam.serviceAccountTokenCreator", *p],
            *([["gcloud", "storage", "buckets", "add-iam-policy-binding", f"gs://{self.bucket}",
                f"--member={self.rollback_writer}", "--role=roles/storage.objectUser", *p]]
              if self.rollback_writer else []),
            ["gcloud", "storage", "service-agent", *p],  # makes the GCS service agent exist before it is bound
        ]  # fmt: skip
        for topic in TOPICS:
            run.append(shell.ensure(["gcloud", "pubsub", "topics", "describe", topic, *p],
                                    ["gcloud", "pubsub", "topics", "create", topic, *p]))  # fmt: skip
        run += [
            ["gcloud", "pubsub", "topics", "add-iam-policy-binding", JOBS_TOPIC, f"--member={runtime}",
             "--role=roles/pubsub.publisher", *p],
            ["gcloud", "pubsub", "topics", "add-iam-policy-binding", BATCH_TOPIC, f"--member={runtime}",
             "--role=roles/pubsub.publisher", *p],
            # Projects made before April 2021: the Pub/Sub agent mints the push tokens only with this role. It is
            # granted on the one account the pushes authenticate as, not project-wide (every account's tokens).
            ["gcloud", "iam", "service-accounts", "add-iam-policy-binding", self.invoker_sa, f"--member={pubsub_agent}",
             "--role=roles/iam.serviceAccountTokenCreator", *p],
        ]  # fmt: skip
        if self.trigger == "eventarc":
            run.append(["gcloud", "projects", "add-iam-policy-binding", self.project, f"--member={gcs_agent}",
                        "--role=roles/pubsub.publisher", "--condition=None"])  # fmt: skip
            run.append(["gcloud", "projects", "add-iam-policy-binding", self.project, f"--member={invoker}",
                        "--role=roles/eventarc.eventReceiver", "--condition=None"])  # fmt: skip
        else:
            run.append(["gcloud", "pubsub", "topics", "add-iam-policy-binding", NOTIFICATIONS_TOPIC,
                        f"--member={gcs_agent}", "--role=roles/pubsub.publisher", *p])  # fmt: skip
            listed = ["gcloud", "storage", "buckets", "notifications", "list", f"gs://{self.bucket}",
                      "--format=value(topic)", *p]  # fmt: skip
            create = ["gcloud", "storage", "buckets", "notifications", "create", f"gs://{self.bucket}",
                      f"--topic={NOTIFICATIONS_TOPIC}", "--event-types=OBJECT_FINALIZE", "--object-prefix=uploads/",
                      "--payload-format=json", *p]  # fmt: skip
            run.append(_unless_listed(listed, NOTIFICATIONS_TOPIC, create))
        # Live sync's topic may take the bucket's notifications; the notification itself is made by `plan --live`
        # (the operator) and removed by `finish`, so an idle bucket pays no replication invocation per change.
        run.append(["gcloud", "pubsub", "topics", "add-iam-policy-binding", REPLICATION_TOPIC,
                    f"--member={gcs_agent}", "--role=roles/pubsub.publisher", *p])  # fmt: skip
        # The source as deployed: .gcloudignore's files, with requirements.lock (pinned, hashed) as requirements.txt.
        run.append([f'"${{PYTHON:-python3}}" -m deploy.package --gcp-source {SOURCE}'])
        for fn in self.functions():
            deploy = ["gcloud", "functions", "deploy", fn.name, "--gen2", "--runtime=python312",
                      f"--region={self.region}", f"--source={SOURCE}", f"--entry-point={fn.entry_point}", *fn.trigger,
                      f"--service-account={self.runtime_sa}",
                      f"--build-service-account=projects/{self.project}/serviceAccounts/{self.sa('gray-build')}",
                      f"--memory={fn.memory}", "--cpu=1", f"--concurrency={fn.concurrency}", "--timeout=120s",
                      f"--set-env-vars={self.env(fn)}", *p]  # fmt: skip
            if "--trigger-http" not in fn.trigger:
                deploy.append(f"--trigger-service-account={self.invoker_sa}")
            run.append(shell.retry(f"the roles of the new service accounts (deploy {fn.name})", deploy))
            if "--trigger-http" not in fn.trigger:
                run.append(["gcloud", "functions", "add-invoker-policy-binding", fn.name, f"--region={self.region}",
                            f"--member={invoker}", *p])  # fmt: skip
        for function, variable, dead_letter_topic in DEAD_LETTERS:
            trigger = shell.render(["gcloud", "functions", "describe", function, "--gen2", f"--region={self.region}",
                                    "--format=value(eventTrigger.trigger)", *p])  # fmt: skip
            run += [
                [f"{variable}=$(gcloud eventarc triggers describe $({trigger}) --location={self.region} "
                 f"--project={self.project} --format='value(transport.pubsub.subscription)')"],
                ["gcloud", "pubsub", "subscriptions", "update", f"${{{variable}}}",
                 f"--dead-letter-topic={dead_letter_topic}", f"--max-delivery-attempts={MAX_DELIVERY_ATTEMPTS}",
                 "--min-retry-delay=10s", "--max-retry-delay=600s", *p],
                ["gcloud", "pubsub", "topics", "add-iam-policy-binding", dead_letter_topic, f"--member={pubsub_agent}",
                 "--role=roles/pubsub.publisher", *p],
                ["gcloud", "pubsub", "subscriptions", "add-iam-policy-binding", f"${{{variable}}}",
                 f"--member={pubsub_agent}", "--role=roles/pubsub.subscriber", *p],
            ]  # fmt: skip
        run += self.federation_commands()
        run.append(shell.assign("RUNTIME_SA_ID", ["gcloud", "iam", "service-accounts", "describe", self.runtime_sa,
                                                  "--format=value(uniqueId)", *p]))  # fmt: skip
        ids = {"gcp_project_number": "${PROJECT_NUMBER}", "gcp_runtime_sa_id": "${RUNTIME_SA_ID}",
               "gcp_reader_sa": self.reader_sa}  # fmt: skip
        if self.azure:
            ids["gcp_wif_provider"] = self.provider_name
        run.append(shell.emit_ids(ids))
        return run

    def federation_commands(self) -> list[list[str]]:
        """The pool and provider that trust the Entra tenant, and who may impersonate ``gray-reader``."""
        if not self.azure:
            return []
        p, where = [f"--project={self.project}"], ["--location=global"]
        pools = ["gcloud", "iam", "workload-identity-pools"]
        provider = [PROVIDER, *where, f"--workload-identity-pool={POOL}"]
        state = ["--format=value(state)", *p]
        # Defence in depth: the impersonation binding names one subject; the provider admits only that tenant (and
        # that managed identity, when its id is known) in the first place.
        condition = f"assertion.tid=='{self.azure.tenant_id}'"
        if self.azure.principal_id:
            condition += f" && assertion.sub=='{self.azure.principal_id}'"
        trust = [f"--issuer-uri={entra_issuer(self.azure.tenant_id)}",
                 f"--allowed-audiences={','.join(ENTRA_TOKEN_AUDIENCES)}",
                 "--attribute-mapping=google.subject=assertion.sub,attribute.tid=assertion.tid",
                 f"--attribute-condition={condition}"]  # fmt: skip
        run = [
            shell.ensure_revived([*pools, "describe", POOL, *where, *state],
                                 [*pools, "undelete", POOL, *where, *p],
                                 [*pools, "create", POOL, *where, "--display-name=Azure (grayscale migration)", *p]),
            shell.ensure_revived([*pools, "providers", "describe", *provider, *state],
                                 [*pools, "providers", "undelete", *provider, *p],
                                 [*pools, "providers", "create-oidc", *provider, *trust, *p],
                                 [*pools, "providers", "update-oidc", *provider, *trust, *p]),
        ]  # fmt: skip
        if self.azure.principal_id:
            principal = (f"principal://iam.googleapis.com/projects/${{PROJECT_NUMBER}}/locations/global/"
                         f"workloadIdentityPools/{POOL}/subject/{self.azure.principal_id}")  # fmt: skip
            run.append(["gcloud", "iam", "service-accounts", "add-iam-policy-binding", self.reader_sa,
                        f"--member={principal}", "--role=roles/iam.workloadIdentityUser", *p])  # fmt: skip
        return run


def teardown_commands(plan: Plan) -> list[list[str]]:
    """Remove what ``commands`` created, in reverse order, and nothing else.

    The APIs stay enabled (other services may use them). The bucket goes with
    its data: this is the decommission step of the cutover runbook, after the
    migration has been verified. Each delete tolerates what is already gone, so
    a teardown that stopped halfway can be run again.
    """
    p = [f"--project={plan.project}"]
    pubsub_agent = "serviceAccount:service-${PROJECT_NUMBER}@gcp-sa-pubsub.iam.gserviceaccount.com"
    run: list[list[str]] = [
        shell.assign("PROJECT_NUMBER", ["gcloud", "projects", "describe", plan.project,
                                        "--format=value(projectNumber)"]),
    ]  # fmt: skip
    for fn in reversed(plan.functions()):
        run.append(_gone(["gcloud", "functions", "delete", fn.name, "--gen2", f"--region={plan.region}", "--quiet",
                          *p]))  # fmt: skip
    if plan.azure:
        run.append(_gone(["gcloud", "iam", "workload-identity-pools", "delete", POOL, "--location=global", "--quiet",
                          *p]))  # fmt: skip
    if plan.trigger == "eventarc":
        gcs_agent = "serviceAccount:service-${PROJECT_NUMBER}@gs-project-accounts.iam.gserviceaccount.com"
        run.append(_gone(["gcloud", "projects", "remove-iam-policy-binding", plan.project, f"--member={gcs_agent}",
                          "--role=roles/pubsub.publisher", "--condition=None"]))  # fmt: skip
    run.append(_gone(["gcloud", "projects", "remove-iam-policy-binding", plan.project, f"--member={pubsub_agent}",
                      "--role=roles/iam.serviceAccountTokenCreator", "--condition=None"]))  # fmt: skip
    run.append(_gone(["gcloud", "projects", "remove-iam-policy-binding", plan.project,
                      f"--member=serviceAccount:{plan.sa('gray-build')}", "--role=roles/cloudbuild.builds.builder",
                      "--condition=None"]))  # fmt: skip
    run.append(_gone(["gcloud", "pubsub", "topics", "delete", *TOPICS, *p]))
    run.append(_gone(["gcloud", "storage", "rm", "--recursive", f"gs://{plan.bucket}", *p]))
    for name in reversed(ACCOUNTS):
        run.append(_gone(["gcloud", "iam", "service-accounts", "delete", plan.sa(name), "--quiet", *p]))
    return run


def _unless_listed(listed: list[str], topic: str, create: list[str]) -> list[str]:
    """``create`` unless ``listed`` prints a line ending in ``/topic``.

    grep reads the whole list (not ``-q``, which stops at the first match): under ``pipefail`` a lister
    cut off by SIGPIPE would fail the pipeline, and the notification would be made a second time.
    """
    return [f"{shell.render(listed)} | grep '/{topic}$' >/dev/null || {shell.render(create)}"]


def _gone(command: list[str]) -> list[str]:
    """A delete that may find its resource already gone (a teardown run twice)."""
    return [f"{shell.render(command)} || echo 'already gone: {command[1]} {command[2]}' >&2"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--project")
    parser.add_argument("--bucket")
    parser.add_argument("--region", default="europe-west1")
    parser.add_argument("--trigger", choices=("notification", "eventarc"), default="notification")
    azure = parser.add_argument_group("cross-cloud identity (the ids deploy/azure.py prints)")
    azure.add_argument("--azure-tenant-id", help="Entra tenant whose managed identity reads the bucket")
    azure.add_argument("--azure-client-id", help="client id of the user-assigned identity GCP writes to Azure as")
    azure.add_argument("--azure-storage-account", help="the destination storage account")
    azure.add_argument("--azure-container", help="the destination container")
    azure.add_argument("--azure-principal-id", help="object id of the Azure app's managed identity (reads GCS)")
    parser.add_argument(
        "--public-api", action="store_true", help="anyone may call the API (uploads capped: GRAYSCALE_MAX_UPLOAD_BYTES)"
    )
    parser.add_argument(
        "--rollback-writer",
        metavar="MEMBER",
        help="let this one IAM member (user:..., group:..., serviceAccount:..., principal://...) write the bucket, "
        "for `python -m migrate rollback`; nobody else outside GCP may",
    )
    parser.add_argument("--dry-run", action="store_true", help="print the commands instead of running them")
    parser.add_argument("--teardown", action="store_true", help="remove everything the deploy created")
    parser.add_argument("--check", action="store_true", help="smoke-test the deployment at --api")
    parser.add_argument("--api", help="with --check: the API's base URL")
    parser.add_argument("--stack", help="with --check: read the API URL and storage from this stack file")
    args = parser.parse_args(argv)
    if args.check:
        from deploy import smoke

        return smoke.main_for("gcp", api=args.api, stack=args.stack)
    if not args.project or not args.bucket:
        parser.error("--project and --bucket are required (or --check --api URL)")
    ids = None
    for name in ("azure_tenant_id", "azure_principal_id"):
        value = getattr(args, name)
        if value and not GUID.fullmatch(value):
            flag = "--" + name.replace("_", "-")
            parser.error(f"{flag} must be a GUID (xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx), not {value!r}")
    if args.azure_tenant_id:
        ids = AzureIds(args.azure_tenant_id, args.azure_client_id or "", args.azure_storage_account or "",
                       args.azure_container or "", args.azure_principal_id or "")  # fmt: skip
    elif any((args.azure_client_id, args.azure_storage_account, args.azure_principal_id)):
        parser.error("the Azure ids need --azure-tenant-id too")
    writer = args.rollback_writer
    if writer and not writer.startswith(MEMBER_KINDS):
        parser.error(f"--rollback-writer must be an IAM member ({', '.join(MEMBER_KINDS)}...), not {writer!r}")
    plan = Plan(args.project, args.region, args.bucket, args.trigger, ids, args.public_api, writer)
    commands = teardown_commands(plan) if args.teardown else plan.commands()
    return shell.run(commands, dry_run=args.dry_run)


if __name__ == "__main__":
    sys.exit(main())
