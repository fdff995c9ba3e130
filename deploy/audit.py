"""``make audit``: pip-audit over requirements.lock, failing when anything could not be audited.

pip-audit needs its vulnerability service. Without a network it may report "No known
vulnerabilities found" having audited nothing, so this reads its JSON and fails unless
every pinned package of this Python came back audited. CI claims no audit (it has no network).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parent.parent


def pinned(lock: Path) -> dict[str, str]:
    """Name -> version of the lock's packages that apply to this Python and platform."""
    found = {}
    for line in lock.read_text().splitlines():
        if line and not line.startswith((" ", "#")):
            requirement = Requirement(line.rstrip(" \\"))
            if requirement.marker is None or requirement.marker.evaluate():
                found[requirement.name.lower()] = str(requirement.specifier).removeprefix("==")
    return found


def main() -> int:
    lock = ROOT / "requirements.lock"
    command = [sys.executable, "-m", "pip_audit", "--strict", "--require-hashes", "--disable-pip", "--progress-spinner",
               "off", "--format", "json", "-r", str(lock)]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True)
    try:
        report = json.loads(done.stdout)
    except ValueError:
        print(f"audit FAILED: pip-audit gave no report (exit {done.returncode}):\n{done.stderr}", file=sys.stderr)
        return 2
    audited = {d["name"].lower(): d for d in report.get("dependencies", []) if "skip_reason" not in d}
    missing = sorted(set(pinned(lock)) - set(audited))
    vulnerable = {name: [v["id"] for v in d.get("vulns", [])] for name, d in audited.items() if d.get("vulns")}
    if missing:
        print(f"audit FAILED: {len(missing)} pinned packages were not audited: {', '.join(missing)}", file=sys.stderr)
        return 2
    for name, ids in vulnerable.items():
        print(f"{name} {audited[name]['version']}: {', '.join(ids)}")
    print(f"audited {len(audited)} packages: {len(vulnerable)} with known vulnerabilities")
    return 1 if vulnerable else 0


if __name__ == "__main__":
    sys.exit(main())
