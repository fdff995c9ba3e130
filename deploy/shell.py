"""What both deploy scripts share: commands as shell lines, printed (--dry-run) or run with bash.

A command is a list of arguments, quoted when rendered, with ``${...}`` left
for the shell. A one-element command is a shell line written by hand (an
assignment from ``$(...)``, an ``||``), printed as it is. Three helpers make
the scripts safe to run twice and on a fresh project:

- ``ensure(check, make)``: run ``make`` only when ``check`` fails (the resource is not there yet);
  ``ensure_revived`` also undeletes a soft-deleted one;
- ``retry(what, command)``: bounded retries that say what they wait for (role propagation);
  the shell function ``nonempty`` makes a command that prints nothing (a key not made yet) fail;
- ``emit_ids(...)``: the ids the script made, as one JSON object on the last line.
"""

from __future__ import annotations

import shlex
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# Azure documents up to 30 minutes for a role assignment to take effect; IAM on GCP takes up to 7.
RETRY_FUNCTION = """\
retry() {  # retry WHAT COMMAND...: up to RETRY_TRIES tries, RETRY_SECONDS apart, saying what it waits for
  local what=$1 n=1; shift
  until "$@"; do
    if [ "$n" -ge "${RETRY_TRIES:-60}" ]; then echo "gave up waiting for $what after $n tries" >&2; return 1; fi
    echo "waiting for $what (try $n of ${RETRY_TRIES:-60}, next in ${RETRY_SECONDS:-30} s)" >&2
    sleep "${RETRY_SECONDS:-30}"; n=$((n + 1))
  done
}
nonempty() {  # nonempty COMMAND...: fail when the command prints nothing (a key that does not exist yet)
  local out; out=$("$@") && [ -n "$out" ] && echo "$out"
}
"""


def render(command: list[str]) -> str:
    """One shell line: arguments quoted, but ``${...}`` left for the shell to expand."""
    if len(command) == 1:
        return command[0]
    return " ".join(f'"{arg}"' if "${" in arg else shlex.quote(arg) for arg in command)


def ensure(check: list[str], make: list[str]) -> list[str]:
    """``make`` only if ``check`` fails: a create that is safe to run twice."""
    return [f"{render(check)} &>/dev/null || {render(make)}"]


def ensure_revived(
    state: list[str], undelete: list[str], make: list[str], update: list[str] | None = None
) -> list[str]:
    """``make`` when ``state`` prints nothing; ``undelete`` when it prints ``DELETED`` (then ``update``); else
    ``update``, when given. A resource kept for 30 days after its deletion (a workload identity pool or provider)
    blocks a create of its name, yet ``describe`` finds it, so a plain ``ensure`` would leave it deleted."""
    revive = render(undelete) + (f" && {render(update)}" if update else "")
    other = f" *) {render(update)} ;;" if update else ""
    return [f'case "$({render(state)} 2>/dev/null)" in DELETED) {revive} ;; "") {render(make)} ;;{other} esac']


def retry(what: str, command: list[str]) -> list[str]:
    """``command`` retried (bounded) until it works, e.g. while a role assignment propagates."""
    return ["retry", what, *command]


def assign(name: str, command: list[str]) -> list[str]:
    """``NAME=$(command)``."""
    return [f"{name}=$({render(command)})"]


def emit_ids(ids: dict[str, str]) -> list[str]:
    """Print ``ids`` as one JSON object (shell variables expanded): the script's last line."""
    body = ", ".join(f'\\"{key}\\": \\"{value}\\"' for key, value in ids.items())
    return [f'echo "{{{body}}}"']


def run(commands: list[list[str]], *, dry_run: bool, header: str = "") -> int:
    """Print the script (``dry_run``) or run it with bash, stopping at the first failure."""
    script = "set -euo pipefail\n" + RETRY_FUNCTION + header + "\n".join(render(c) for c in commands) + "\n"
    if dry_run:
        print(script, end="")
        return 0
    return subprocess.run(["bash", "-c", script], cwd=ROOT, check=False).returncode
