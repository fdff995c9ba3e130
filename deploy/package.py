"""The Azure function app's zip, built from the ``.funcignore`` rules.

``az functionapp deployment source config-zip`` ignores ``.funcignore`` (only Core
Tools read it), so the zip is built here with the same gitignore-style rules:

    python -m deploy.package .dist/function-app.zip
"""

from __future__ import annotations

import sys
import zipfile
from pathlib import Path

import pathspec

ROOT = Path(__file__).resolve().parent.parent


def included(root: Path = ROOT) -> list[str]:
    """The files the zip holds, as paths relative to ``root``, sorted."""
    rules = (root / ".funcignore").read_text().splitlines()
    spec = pathspec.GitIgnoreSpec.from_lines(rules)
    files = (p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())
    return sorted(f for f in files if not spec.match_file(f))


def build(target: Path, root: Path = ROOT) -> list[str]:
    """Write the zip to ``target``; return what it holds."""
    names = included(root)
    target.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as archive:
        for name in names:
            archive.write(root / name, name)
    return names


if __name__ == "__main__":
    out = Path(sys.argv[1] if len(sys.argv) > 1 else ".dist/function-app.zip")
    held = build(out if out.is_absolute() else ROOT / out)
    print(f"{out}: {len(held)} files")
