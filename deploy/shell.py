"""What both deploy scripts share: commands as shell lines, printed (--dry-run) or run with bash."""

from __future__ import annotations

import shlex
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def render(command: list[str]) -> str:
    """One shell line: arguments quoted, but ``${...}`` left for the shell to expand.

    A one-element command that assigns a variable (``NAME=$(...)``) is printed as it is.
    """
    if len(command) == 1 and "=$(" in command[0]:
        return command[0]
    return " ".join(f'"{arg}"' if "${" in arg else shlex.quote(arg) for arg in command)


def run(commands: list[list[str]], *, dry_run: bool, header: str = "") -> int:
    """Print the script (``dry_run``) or run it with bash, stopping at the first failure."""
    script = "set -euo pipefail\n" + header + "\n".join(render(c) for c in commands) + "\n"
    if dry_run:
        print(script, end="")
        return 0
    return subprocess.run(["bash", "-c", script], cwd=ROOT, check=False).returncode
