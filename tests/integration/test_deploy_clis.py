"""Every gcloud and az command the deploy scripts print, fed to the real, signed-out CLIs.

A signed-out ``gcloud`` and ``az`` parse the whole command line (flags, choices,
required arguments) before they ask for an account. So a command they accept
fails only for want of a login ("You do not currently have an active account",
"Please run 'az login'"); any other answer is a refusal of a flag or value.
This is a parse, not a server-side validation: names, roles and scopes are
checked by the clouds only when the script runs for real (README says so).

Commands nested in ``$(...)``, after ``||`` and behind ``retry``/``nonempty``
are fed too, with ``${VAR}`` replaced by placeholders of the right shape.
``az`` comes from PyPI's azure-cli, in a virtualenv of its own (``.venv-az``,
which ``.ci/run`` makes: its pins clash with the app's azure packages).
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.helper import GCP_IDS, absent, deploy_dry_run

ROOT = Path(__file__).resolve().parents[2]
AZ = ROOT / ".venv-az" / "bin" / "az"
PLACEHOLDERS = {
    "PROJECT_NUMBER": "123456789012",
    "STORAGE_ID": "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/rg/providers/"
    "Microsoft.Storage/storageAccounts/sa1",
    "PRINCIPAL": "11111111-1111-1111-1111-111111111111",
    "WRITER_PRINCIPAL": "22222222-2222-2222-2222-222222222222",
    "DEPLOYER": "33333333-3333-3333-3333-333333333333",
    "DEPLOYER_KIND": "User",
    "HOST_NAME": "app1.azurewebsites.net",
    "BLOBS_KEY": "placeholder-key",
    "JOBS_SUBSCRIPTION": "projects/proj-1/subscriptions/eventarc-sub",
    "BATCH_SUBSCRIPTION": "projects/proj-1/subscriptions/eventarc-sub-2",
}
GCP_ARGS = ["--project", "proj-1", "--bucket", "bkt"]
AZURE_IDS = ["--azure-tenant-id", "44444444-4444-4444-4444-444444444444", "--azure-client-id",
             "55555555-5555-5555-5555-555555555555", "--azure-storage-account", "sa1", "--azure-container",
             "grayscale", "--azure-principal-id", "11111111-1111-1111-1111-111111111111"]  # fmt: skip
AZURE_ARGS = ["--resource-group", "rg", "--storage-account", "sa1", "--app", "app1"]
SCRIPTS = {
    "gcp notification": ("gcp.py", GCP_ARGS),
    "gcp eventarc": ("gcp.py", [*GCP_ARGS, "--trigger", "eventarc"]),
    "gcp notification, cross-cloud, public": (
        "gcp.py",
        [*GCP_ARGS, *AZURE_IDS, "--public-api", "--rollback-writer", "group:migration-operators@example.com"],
    ),
    "gcp eventarc, cross-cloud": ("gcp.py", [*GCP_ARGS, *AZURE_IDS, "--trigger", "eventarc"]),
    "azure": ("azure.py", [*AZURE_ARGS, "--operator", "ops-1"]),
    "azure, cross-cloud": ("azure.py", [*AZURE_ARGS, *GCP_IDS, "--gcs-bucket", "bkt"]),
}
PUNCTUATION = set("();|&<>")


def cli_commands(script: str, cli: str) -> list[list[str]]:
    """Every ``cli`` invocation in a printed script, nested ones included, with placeholders for variables.

    A ``$(...)`` inside a command stands for one argument: ``placeholder-value``.
    """
    found: list[list[str]] = []
    for line in script.splitlines():
        for name, value in PLACEHOLDERS.items():
            line = line.replace(f"${{{name}}}", value)
        lexer = shlex.shlex(line.replace("$(", " ( "), posix=True, punctuation_chars=True)
        lexer.whitespace_split = True
        stack: list[list[str] | None] = []
        current: list[str] | None = None
        for token in [*lexer, ";"]:
            if set(token) <= PUNCTUATION:
                for char in token:
                    if char == "(":
                        stack.append(current)
                        current = None
                        continue
                    if current:
                        found.append(current)
                    current = None
                    if char == ")" and stack:
                        current = stack.pop()
                        if current is not None:
                            current.append("placeholder-value")
            elif current is not None:
                current.append(token)
            elif token == cli:
                current = [cli]
    return found


def refusals(cli: list[str], commands: list[list[str]], env: dict[str, str], signed_out: str) -> list[str]:
    """The commands the CLI refused, each with its first error line."""

    def parse(command: list[str]) -> str | None:
        done = subprocess.run([*cli, *command[1:]], capture_output=True, text=True, env=env, timeout=120,
                              stdin=subprocess.DEVNULL)  # fmt: skip
        if done.returncode == 1 and signed_out in done.stderr:
            return None
        first = next((line for line in done.stderr.splitlines() if line.strip()), f"exit {done.returncode}")
        return f"{shlex.join(command)}\n    -> {first}"

    with ThreadPoolExecutor(max_workers=4) as pool:
        return [r for r in pool.map(parse, commands) if r]


def printed(script: str, args: list[str], *extra: str) -> str:
    return "\n".join(deploy_dry_run(script, *args, *extra))


def every_command(cli: str, script: str) -> list[list[str]]:
    """The ``cli`` commands of every mode of ``script``, deploy and teardown, each once."""
    unique: dict[str, list[str]] = {}
    for name, args in SCRIPTS.values():
        if name != script:
            continue
        for extra in ([], ["--teardown"]):
            commands = cli_commands(printed(name, args, *extra), cli)
            assert len(commands) >= (5 if extra else 20), commands
            unique.update((shlex.join(c), c) for c in commands)
    return list(unique.values())


def test_every_gcloud_command_parses(tmp_path: Path) -> None:
    gcloud = shutil.which("gcloud")
    if not gcloud:
        absent("gcloud", "not on PATH (it comes with the google-cloud-cli of the machine image)")
    env = {**os.environ, "CLOUDSDK_CONFIG": str(tmp_path), "CLOUDSDK_CORE_DISABLE_PROMPTS": "1"}
    commands = every_command("gcloud", "gcp.py")
    refused = refusals([gcloud], commands, env, "You do not currently have an active account selected")
    assert refused == [], f"{len(refused)} of {len(commands)} commands refused:\n" + "\n".join(refused)
    print(f"gcloud accepted all {len(commands)} distinct commands of deploy/gcp.py in {len(SCRIPTS) - 2} modes")


def test_every_az_command_parses(tmp_path: Path) -> None:
    if not AZ.exists():
        absent("azure-cli", f"not installed in {AZ.parent.parent} (`make az-cli`, about 2 minutes; .ci/run makes it)")
    env = {**os.environ, "AZURE_CONFIG_DIR": str(tmp_path), "AZURE_CORE_COLLECT_TELEMETRY": "no"}
    commands = every_command("az", "azure.py")
    refused = refusals([str(AZ)], commands, env, "Please run 'az login'")
    assert refused == [], f"{len(refused)} of {len(commands)} commands refused:\n" + "\n".join(refused)


@pytest.mark.parametrize(
    ("cli", "command", "signed_out"),
    [
        ("gcloud", ["gcloud", "pubsub", "topics", "create", "t", "--no-such-flag"], "active account"),
        ("gcloud", ["gcloud", "functions", "deploy", "f", "--gen2", "--ingress-settings=everywhere"], "active account"),
        ("az", ["az", "group", "create", "--name", "rg"], "az login"),
        ("az", ["az", "storage", "account", "create", "--name", "sa", "--resource-group", "rg", "--sku", "Bogus"],
         "az login"),
    ],
)  # fmt: skip
def test_a_refused_flag_or_value_is_caught(cli: str, command: list[str], signed_out: str, tmp_path: Path) -> None:
    """The check can fail: a wrong flag, a bad value and a missing required argument are each refused."""
    binary = shutil.which("gcloud") if cli == "gcloud" else (str(AZ) if AZ.exists() else None)
    if not binary:
        absent(cli, "not installed (see the two tests above)")
    env = {**os.environ, "CLOUDSDK_CONFIG": str(tmp_path), "AZURE_CONFIG_DIR": str(tmp_path),
           "CLOUDSDK_CORE_DISABLE_PROMPTS": "1"}  # fmt: skip
    assert len(refusals([binary], [command], env, signed_out)) == 1


def test_nested_commands_are_found() -> None:
    """The extraction itself: ``$(...)``, ``||``, ``retry`` and ``nonempty`` all yield their commands."""
    script = (
        "X=$(gcloud eventarc triggers describe $(gcloud functions describe f --format='value(a)') --location=r)\n"
        "gcloud a describe b &>/dev/null || gcloud a create b --flag\n"
        "K=$(retry 'the key' nonempty az functionapp keys list --name a --query x --output tsv)\n"
        'az role assignment create --scope "${STORAGE_ID}"\n'
    )
    assert cli_commands(script, "gcloud") == [
        ["gcloud", "functions", "describe", "f", "--format=value(a)"],
        ["gcloud", "eventarc", "triggers", "describe", "placeholder-value", "--location=r"],
        ["gcloud", "a", "describe", "b"],
        ["gcloud", "a", "create", "b", "--flag"],
    ]
    assert cli_commands(script, "az") == [
        ["az", "functionapp", "keys", "list", "--name", "a", "--query", "x", "--output", "tsv"],
        ["az", "role", "assignment", "create", "--scope", PLACEHOLDERS["STORAGE_ID"]],
    ]
