"""requirements.lock: every range of requirements.txt pinned and hashed for each Python we deploy, and what ships."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from deploy import package

ROOT = Path(__file__).resolve().parents[2]
PYTHONS = ["3.11", "3.12", "3.13"]  # Azure Functions 3.11 (and 3.13 with azure-functions 2.x), Cloud Functions 3.12


def requirements(path: Path) -> list[Requirement]:
    return [Requirement(line) for line in path.read_text().splitlines() if line.strip() and not line.startswith("#")]


def locked() -> list[tuple[Requirement, list[str]]]:
    """Each pinned line of the lock with its hashes."""
    found: list[tuple[Requirement, list[str]]] = []
    for line in (ROOT / "requirements.lock").read_text().splitlines():
        if line.startswith("    --hash="):
            found[-1][1].append(line.split("=", 1)[1].rstrip(" \\"))
        elif line and not line.startswith((" ", "#")):
            found.append((Requirement(line.rstrip(" \\")), []))
    return found


def environment(python: str) -> dict[str, str]:
    return {"python_version": python, "python_full_version": f"{python}.0", "sys_platform": "linux"}


@pytest.mark.parametrize("python", PYTHONS)
def test_every_requirement_is_pinned_within_its_range(python: str) -> None:
    pins = {}
    for requirement, _ in locked():
        if requirement.marker is None or requirement.marker.evaluate(environment(python)):
            assert requirement.name not in pins, f"{requirement.name} pinned twice for Python {python}"
            pins[requirement.name] = next(iter(requirement.specifier)).version
    for wanted in requirements(ROOT / "requirements.txt"):
        if wanted.marker is not None and not wanted.marker.evaluate(environment(python)):
            continue
        assert wanted.name in pins, f"{wanted.name} is not in requirements.lock for Python {python}: run make lock"
        assert wanted.specifier.contains(pins[wanted.name]), (
            f"{wanted.name}=={pins[wanted.name]} is outside {wanted.specifier}: run make lock"
        )


def test_every_pin_is_exact_and_hashed() -> None:
    entries = locked()
    assert len(entries) > 40
    for requirement, hashes in entries:
        assert str(requirement.specifier).startswith("=="), requirement
        assert hashes and all(h.startswith("sha256:") and len(h) == 71 for h in hashes), requirement


def test_both_deploys_install_the_lock(tmp_path: Path) -> None:
    lock = (ROOT / "requirements.lock").read_bytes()
    package.build(tmp_path / "app.zip")
    with zipfile.ZipFile(tmp_path / "app.zip") as archive:
        assert archive.read("requirements.txt") == lock
        assert "requirements.lock" not in archive.namelist()
    held = package.stage_gcp(tmp_path / "gcp")
    assert (tmp_path / "gcp" / "requirements.txt").read_bytes() == lock
    assert "main.py" in held and any(name.startswith("functions_gcp/") for name in held)
    assert not [n for n in held if n.startswith(("tests/", "devstack/", "functions_azure/", ".venv", "docs/"))]


def test_the_functions_do_not_ship_the_bulk_copys_aiohttp() -> None:
    """azure-storage-blob imports aiohttp whenever it is installed: shipped, it would slow every cold start."""
    shipped = {requirement.name for requirement in requirements(ROOT / "requirements.txt")}
    assert "aiohttp" not in shipped and "aiohttp==" not in (ROOT / "requirements.lock").read_text()
    assert any(r.name == "aiohttp" for r in requirements(ROOT / "requirements-migrate.txt"))
