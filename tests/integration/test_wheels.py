"""The image decoders' wheels exist for what the clouds' remote builds run: CPython 3.11 and 3.12 on x86_64 Linux.

Azure's remote build (Oryx) and Cloud Functions' buildpack ``pip install`` the deploy's ``requirements.txt``
(``requirements.lock``: pinned and hashed) with no compiler for C extensions. So each native package of the
image path is fetched here as those builds would, binary only, hash-checked, for each Python and platform.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helper import absent

ROOT = Path(__file__).resolve().parents[2]
NATIVE = ("pillow", "pi-heif-decoder", "pylibjxl", "numpy")
PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64")


def pinned(names: tuple[str, ...]) -> str:
    """The lock's entries (pin, marker and hashes) for ``names``."""
    blocks = re.split(r"\n(?=[a-z0-9])", (ROOT / "requirements.lock").read_text())
    chosen = [block for block in blocks if re.match(r"([a-z0-9.-]+)==", block) and block.split("==")[0] in names]
    found = {block.split("==")[0] for block in chosen}
    assert found == set(names), f"requirements.lock lacks {sorted(set(names) - found)}: run make lock"
    return "\n".join(chosen) + "\n"


@pytest.mark.parametrize("python", ["3.11", "3.12"])
def test_the_native_wheels_install_where_the_clouds_build(tmp_path: Path, python: str) -> None:
    requirements = tmp_path / "requirements.txt"
    requirements.write_text(pinned(NATIVE))
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--require-hashes",
               "--implementation", "cp", "--python-version", python, "--dest", str(tmp_path / "wheels"),
               "-r", str(requirements)]  # fmt: skip
    for platform in PLATFORMS:
        command += ["--platform", platform]
    run = subprocess.run(command, capture_output=True, text=True, timeout=600)
    if "No matching distribution" not in run.stderr and ("Could not fetch" in run.stderr or "Errno" in run.stderr):
        absent("the package index", f"pip could not reach it: {run.stderr[-300:]}")
    assert run.returncode == 0, run.stderr[-2000:]
    wheels = sorted(path.name for path in (tmp_path / "wheels").iterdir())
    tag = "cp" + python.replace(".", "")
    assert len(wheels) == len(NATIVE), wheels
    assert all(f"-{tag}-" in name and "x86_64" in name for name in wheels), wheels
