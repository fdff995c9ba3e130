"""The import rules of DESIGN.md, checked on the source tree."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PROJECT_PACKAGES = ("core", "migrate", "functions_gcp", "functions_azure", "devstack", "main", "function_app")

# Higher number = higher layer. A module may import only its own layer or lower ones.
LAYERS = {
    "main": 5,
    "function_app": 5,
    "devstack": 5,
    "functions_gcp": 4,
    "functions_azure": 4,
    "migrate": 3,
    "core.clouds": 2,
    "core": 1,
}
CLOUD_SDKS = ("google", "azure")
FRAMEWORKS = ("functions_framework", "azure.functions", "flask", "cloudevents")


def layer_of(module: str) -> tuple[str, int]:
    for name, level in sorted(LAYERS.items(), key=lambda kv: -len(kv[0])):
        if module == name or module.startswith(name + "."):
            return name, level
    raise KeyError(module)


def source_modules() -> list[tuple[str, Path]]:
    found = []
    for path in sorted(ROOT.rglob("*.py")):
        rel = path.relative_to(ROOT)
        top_level_file = len(rel.parts) == 1 and rel.stem in PROJECT_PACKAGES
        if not top_level_file and rel.parts[0] not in PROJECT_PACKAGES:
            continue
        parts = list(rel.with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found.append((".".join(parts), path))
    return found


def imports_of(path: Path, module: str) -> list[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against the package
                base = module.split(".")[: -node.level] if path.name != "__init__.py" else module.split(".")
                names.append(".".join([*base, node.module or ""]).strip("."))
            elif node.module:
                names.append(node.module)
    return names


MODULES = source_modules()


def test_the_tree_has_the_layers() -> None:
    names = {m for m, _ in MODULES}
    assert {"core", "core.imaging", "core.jobs", "core.pipeline", "core.clouds.gcs"} <= names


@pytest.mark.parametrize(("module", "path"), MODULES, ids=[m for m, _ in MODULES])
def test_no_module_imports_a_layer_above_its_own(module: str, path: Path) -> None:
    own_name, own_level = layer_of(module)
    for name in imports_of(path, module):
        top = name.split(".")[0]
        if top in PROJECT_PACKAGES:
            target_name, target_level = layer_of(name)
            assert target_level <= own_level, f"{module} ({own_name}) imports {name} ({target_name}), a layer above"


@pytest.mark.parametrize(("module", "path"), MODULES, ids=[m for m, _ in MODULES])
def test_cloud_sdks_only_in_core_clouds(module: str, path: Path) -> None:
    own_name, _ = layer_of(module)
    for name in imports_of(path, module):
        if name.split(".")[0] not in CLOUD_SDKS:
            continue
        if own_name == "core.clouds":
            continue
        if own_name in ("functions_gcp", "functions_azure", "main", "function_app") and name.startswith(FRAMEWORKS):
            continue
        pytest.fail(f"{module} imports {name}: storage and queue SDKs belong in core/clouds/")


def test_pure_core_uses_only_the_standard_library_and_pillow() -> None:
    # google_crc32c is a checksum, as hashlib is (a C extension, no network, no google.* package);
    # pi_heif and pylibjxl are Pillow plugins for HEIC and JPEG XL, loaded only when such bytes arrive.
    allowed = set(sys.stdlib_module_names) | {"PIL", "core", "google_crc32c", "pi_heif", "pylibjxl"}
    for module, path in MODULES:
        if layer_of(module)[0] != "core":
            continue
        for name in imports_of(path, module):
            assert name.split(".")[0] in allowed, f"{module} imports {name}"


def test_importing_core_loads_no_cloud_sdk() -> None:
    # Compare with a bare interpreter: some wheels' .pth files pre-create the
    # empty ``google`` namespace package at start-up, before any import of ours.
    sdk = "sorted(m for m in sys.modules if m.split('.')[0] in ('google', 'azure'))"
    bare = "import sys\nprint(" + sdk + ")"
    with_core = (
        "import sys, core, core.config, core.errors, core.imaging, core.jobs, core.memory, core.pipeline, core.ports\n"
        "print(" + sdk + ")"
    )
    run = [sys.executable, "-c"]
    before = subprocess.run([*run, bare], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    after = subprocess.run([*run, with_core], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    assert eval(after) == eval(before), "importing core loaded a cloud SDK"
    assert not any(m.startswith(("google.cloud.", "google.api_core", "azure.")) for m in eval(after))


KNOWN_CIRCLES = [{"core.jobs", "core.ports"}]
"""A job record and the ports that store it name each other (for types only); no other circle is allowed."""


def test_no_import_circle_but_the_known_one() -> None:
    """Every import, at the top or inside a function, counts: a deferred import is still a dependency."""
    graph = {module: set() for module, _ in MODULES}
    for module, path in MODULES:
        for name in imports_of(path, module):
            while name and name not in graph:  # ``from core.errors import X`` -> core.errors
                name = name.rpartition(".")[0]
            if name and name != module and not module.startswith(name + "."):
                graph[module].add(name)
    circles = [set(c) for c in strongly_connected(graph) if len(c) > 1]
    assert [c for c in circles if c not in KNOWN_CIRCLES] == []


def strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's algorithm, iteratively: the groups of modules that import each other, directly or not."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, edges = work[-1]
            for target in edges:
                if target not in index:
                    index[target] = low[target] = len(index)
                    stack.append(target)
                    on_stack.add(target)
                    work.append((target, iter(sorted(graph[target]))))
                    break
                if target in on_stack:
                    low[node] = min(low[node], index[target])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    group = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        group.append(member)
                        if member == node:
                            break
                    found.append(group)
    return found
