"""Deploy the pipeline to Google Cloud with gcloud, in order; ``--dry-run`` prints the commands.

    python deploy/gcp.py --project P --bucket B [--region europe-west1] [--trigger notification|eventarc] [--dry-run]

What it creates, in order:
 1. the APIs it needs;
 2. two service accounts: ``gray-runtime`` (what the functions run as) and
    ``gray-invoker`` (what Pub/Sub and Eventarc use to call them);
 3. the bucket (uniform access), with ``gray-runtime`` as object user on it only;
 4. the topics ``gcs-notifications``, ``grayscale-jobs``, ``grayscale-jobs-dead``,
    ``migrate-batches`` and ``migrate-batches-dead``, ``gray-runtime`` allowed to publish to
    ``grayscale-jobs`` and ``migrate-batches`` only;
 5. the upload trigger: a bucket notification (OBJECT_FINALIZE under ``uploads/``)
    on ``gcs-notifications``, or with ``--trigger eventarc`` a direct Eventarc trigger;
 6. the six functions (the four of the pipeline, ``migrate_batch`` and ``migrate_batch_dead_letter``;
    gen2, python312, ``--retry`` on the event ones);
 7. the dead-letter policies (5 attempts) on the ``process_job`` and ``migrate_batch``
    subscriptions, with the IAM the Pub/Sub service agent needs for them;
 8. ``gray-invoker`` as the only invoker of the event functions. The API is deployed
    ``--no-allow-unauthenticated``: grant ``roles/run.invoker`` to its callers.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

# This script's folder is on the path; the project root is what the imports need.
sys.path[0] = str(Path(__file__).resolve().parent.parent)

from deploy import shell  # noqa: E402

NOTIFICATIONS_TOPIC = "gcs-notifications"
JOBS_TOPIC = "grayscale-jobs"
DEAD_LETTER_TOPIC = "grayscale-jobs-dead"
BATCH_TOPIC = "migrate-batches"
BATCH_DEAD_LETTER_TOPIC = "migrate-batches-dead"
DEAD_LETTERS = [("process-job", "JOBS_SUBSCRIPTION", DEAD_LETTER_TOPIC),
                ("migrate-batch", "BATCH_SUBSCRIPTION", BATCH_DEAD_LETTER_TOPIC)]  # fmt: skip
"""(function, shell variable for its subscription, dead-letter topic)."""
MAX_DELIVERY_ATTEMPTS = 5
APIS = [
    "cloudfunctions.googleapis.com",
    "run.googleapis.com",
    "cloudbuild.googleapis.com",
    "artifactregistry.googleapis.com",
    "eventarc.googleapis.com",
    "pubsub.googleapis.com",
    "storage.googleapis.com",
    "logging.googleapis.com",
]


@dataclass(frozen=True)
class Function:
    name: str
    entry_point: str
    trigger: list[str]
    memory: str = "512Mi"


@dataclass(frozen=True)
class Plan:
    project: str
    region: str
    bucket: str
    trigger: str

    @property
    def runtime_sa(self) -> str:
        return f"gray-runtime@{self.project}.iam.gserviceaccount.com"

    @property
    def invoker_sa(self) -> str:
        return f"gray-invoker@{self.project}.iam.gserviceaccount.com"

    def functions(self) -> list[Function]:
        if self.trigger == "eventarc":
            upload_trigger = [
                "--trigger-event-filters=type=google.cloud.storage.object.v1.finalized",
                f"--trigger-event-filters=bucket={self.bucket}",
            ]
        else:
            upload_trigger = [f"--trigger-topic={NOTIFICATIONS_TOPIC}"]
        return [
            Function("on-upload", "on_upload", [*upload_trigger, "--retry"]),
            Function("process-job", "process_job", [f"--trigger-topic={JOBS_TOPIC}", "--retry"], memory="1Gi"),
            Function("on-dead-letter", "on_dead_letter", [f"--trigger-topic={DEAD_LETTER_TOPIC}", "--retry"]),
            Function("api", "api", ["--trigger-http", "--no-allow-unauthenticated"], memory="1Gi"),
            Function("migrate-batch", "migrate_batch", [f"--trigger-topic={BATCH_TOPIC}", "--retry"], memory="1Gi"),
            Function(
                "migrate-batch-dead",
                "migrate_batch_dead_letter",
                [f"--trigger-topic={BATCH_DEAD_LETTER_TOPIC}", "--retry"],
            ),
        ]

    def commands(self) -> list[list[str]]:
        p = [f"--project={self.project}"]
        runtime, invoker = f"serviceAccount:{self.runtime_sa}", f"serviceAccount:{self.invoker_sa}"
        pubsub_agent = "serviceAccount:service-${PROJECT_NUMBER}@gcp-sa-pubsub.iam.gserviceaccount.com"
        gcs_agent = "serviceAccount:service-${PROJECT_NUMBER}@gs-project-accounts.iam.gserviceaccount.com"
        env = f"GCS_BUCKET={self.bucket},JOBS_TOPIC={JOBS_TOPIC},GOOGLE_CLOUD_PROJECT={self.project}"
        run: list[list[str]] = [
            ["gcloud", "services", "enable", *APIS, *p],
            [f"PROJECT_NUMBER=$(gcloud projects describe {self.project} --format='value(projectNumber)')"],
            ["gcloud", "iam", "service-accounts", "create", "gray-runtime", "--display-name=grayscale functions", *p],
            ["gcloud", "iam", "service-accounts", "create", "gray-invoker", "--display-name=grayscale invoker", *p],
            ["gcloud", "storage", "buckets", "create", f"gs://{self.bucket}", f"--location={self.region}",
             "--uniform-bucket-level-access", *p],
            ["gcloud", "storage", "buckets", "add-iam-policy-binding", f"gs://{self.bucket}", f"--member={runtime}",
             "--role=roles/storage.objectUser"],
            ["gcloud", "pubsub", "topics", "create", NOTIFICATIONS_TOPIC, JOBS_TOPIC, DEAD_LETTER_TOPIC,
             BATCH_TOPIC, BATCH_DEAD_LETTER_TOPIC, *p],
            ["gcloud", "pubsub", "topics", "add-iam-policy-binding", JOBS_TOPIC, f"--member={runtime}",
             "--role=roles/pubsub.publisher", *p],
            ["gcloud", "pubsub", "topics", "add-iam-policy-binding", BATCH_TOPIC, f"--member={runtime}",
             "--role=roles/pubsub.publisher", *p],
        ]  # fmt: skip
        if self.trigger == "eventarc":
            run.append(["gcloud", "projects", "add-iam-policy-binding", self.project, f"--member={gcs_agent}",
                        "--role=roles/pubsub.publisher"])  # fmt: skip
            run.append(["gcloud", "projects", "add-iam-policy-binding", self.project, f"--member={invoker}",
                        "--role=roles/eventarc.eventReceiver"])  # fmt: skip
        else:
            run.append(["gcloud", "storage", "buckets", "notifications", "create", f"gs://{self.bucket}",
                        f"--topic={NOTIFICATIONS_TOPIC}", "--event-types=OBJECT_FINALIZE", "--object-prefix=uploads/",
                        "--payload-format=json"])  # fmt: skip
        for fn in self.functions():
            deploy = ["gcloud", "functions", "deploy", fn.name, "--gen2", "--runtime=python312",
                      f"--region={self.region}", "--source=.", f"--entry-point={fn.entry_point}", *fn.trigger,
                      f"--service-account={self.runtime_sa}", f"--memory={fn.memory}", "--timeout=120s",
                      f"--set-env-vars={env}", *p]  # fmt: skip
            if "--trigger-http" not in fn.trigger:
                deploy.append(f"--trigger-service-account={self.invoker_sa}")
            run.append(deploy)
            if "--trigger-http" not in fn.trigger:
                run.append(["gcloud", "functions", "add-invoker-policy-binding", fn.name, f"--region={self.region}",
                            f"--member={invoker}", *p])  # fmt: skip
        for function, variable, dead_letter_topic in DEAD_LETTERS:
            subscription = (
                f"$(gcloud eventarc triggers describe $(gcloud functions describe {function} --gen2 "
                f"--region={self.region} --project={self.project} --format='value(eventTrigger.trigger)') "
                f"--location={self.region} --project={self.project} --format='value(transport.pubsub.subscription)')"
            )
            run += [
                [f"{variable}=" + subscription],
                ["gcloud", "pubsub", "subscriptions", "update", f"${{{variable}}}",
                 f"--dead-letter-topic={dead_letter_topic}", f"--max-delivery-attempts={MAX_DELIVERY_ATTEMPTS}",
                 "--min-retry-delay=10s", "--max-retry-delay=600s", *p],
                ["gcloud", "pubsub", "topics", "add-iam-policy-binding", dead_letter_topic, f"--member={pubsub_agent}",
                 "--role=roles/pubsub.publisher", *p],
                ["gcloud", "pubsub", "subscriptions", "add-iam-policy-binding", f"${{{variable}}}",
                 f"--member={pubsub_agent}", "--role=roles/pubsub.subscriber", *p],
            ]  # fmt: skip
        return run


def teardown_commands(plan: Plan) -> list[list[str]]:
    """Remove what ``commands`` created, in reverse order, and nothing else.

    The APIs stay enabled (other services may use them). The bucket goes with
    its data: this is the decommission step of the cutover runbook, after the
    migration has been verified.
    """
    p = [f"--project={plan.project}"]
    run: list[list[str]] = []
    for fn in reversed(plan.functions()):
        run.append(["gcloud", "functions", "delete", fn.name, "--gen2", f"--region={plan.region}", "--quiet", *p])
    if plan.trigger == "eventarc":
        gcs_agent = "serviceAccount:service-${PROJECT_NUMBER}@gs-project-accounts.iam.gserviceaccount.com"
        run.insert(0, [f"PROJECT_NUMBER=$(gcloud projects describe {plan.project} --format='value(projectNumber)')"])
        run.append(["gcloud", "projects", "remove-iam-policy-binding", plan.project, f"--member={gcs_agent}",
                    "--role=roles/pubsub.publisher"])  # fmt: skip
    run += [
        [
            "gcloud",
            "pubsub",
            "topics",
            "delete",
            NOTIFICATIONS_TOPIC,
            JOBS_TOPIC,
            DEAD_LETTER_TOPIC,
            BATCH_TOPIC,
            BATCH_DEAD_LETTER_TOPIC,
            *p,
        ],
        ["gcloud", "storage", "rm", "--recursive", f"gs://{plan.bucket}", *p],
        ["gcloud", "iam", "service-accounts", "delete", plan.invoker_sa, "--quiet", *p],
        ["gcloud", "iam", "service-accounts", "delete", plan.runtime_sa, "--quiet", *p],
    ]
    return run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--project", required=True)
    parser.add_argument("--bucket", required=True)
    parser.add_argument("--region", default="europe-west1")
    parser.add_argument("--trigger", choices=("notification", "eventarc"), default="notification")
    parser.add_argument("--dry-run", action="store_true", help="print the commands instead of running them")
    parser.add_argument("--teardown", action="store_true", help="remove everything the deploy created")
    args = parser.parse_args(argv)
    plan = Plan(args.project, args.region, args.bucket, args.trigger)
    commands = teardown_commands(plan) if args.teardown else plan.commands()
    return shell.run(commands, dry_run=args.dry_run)


if __name__ == "__main__":
    sys.exit(main())
