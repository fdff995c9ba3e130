"""What each cloud builds from: the Azure function app's zip, and GCP's source folder.

``az functionapp deployment source config-zip`` ignores ``.funcignore`` (only Core
Tools read it), so the zip is built here with the same gitignore-style rules; GCP's
source folder is staged with ``.gcloudignore``'s. In both, ``requirements.txt`` is
``requirements.lock``: every version pinned and every file hashed, so two deploys of
one commit run the same code (the ranges of requirements.txt are for development):

    python -m deploy.package .dist/function-app.zip
    python -m deploy.package --gcp-source .dist/gcp-source
"""

from __future__ import annotations

import os
import shutil
import sys
import zipfile
from pathlib import Path

import pathspec

ROOT = Path(__file__).resolve().parent.parent


LOCK = "requirements.lock"


def included(root: Path = ROOT, ignore_file: str = ".funcignore") -> list[str]:
    """The files a deploy holds, as paths relative to ``root``, sorted (an ignored folder is never walked)."""
    rules = (root / ignore_file).read_text().splitlines()
    spec = pathspec.GitIgnoreSpec.from_lines(rules)
    found = []
    for folder, folders, files in os.walk(root):
        here = Path(folder).relative_to(root).as_posix()
        prefix = "" if here == "." else here + "/"
        folders[:] = [d for d in folders if not spec.match_file(prefix + d + "/")]
        found += [prefix + f for f in files if not spec.match_file(prefix + f) and prefix + f != LOCK]
    return sorted(found)


def build(target: Path, root: Path = ROOT) -> list[str]:
    """Write the Azure zip to ``target``; return what it holds."""
    names = included(root)
    target.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as archive:
        for name in names:
            if name == "requirements.txt":
                archive.writestr(name, (root / LOCK).read_bytes())
            else:
                archive.write(root / name, name)
    return names


def stage_gcp(target: Path, root: Path = ROOT) -> list[str]:
    """Copy GCP's source (``.gcloudignore``'s rules) into the empty folder ``target``; return what it holds."""
    names = included(root, ".gcloudignore")
    shutil.rmtree(target, ignore_errors=True)
    for name in names:
        (target / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(root / (LOCK if name == "requirements.txt" else name), target / name)
    return names


if __name__ == "__main__":
    gcp = sys.argv[1:2] == ["--gcp-source"]
    out = Path(sys.argv[2 if gcp else 1] if len(sys.argv) > (2 if gcp else 1) else
               (".dist/gcp-source" if gcp else ".dist/function-app.zip"))  # fmt: skip
    out = out if out.is_absolute() else ROOT / out
    held = stage_gcp(out) if gcp else build(out)
    print(f"{out}: {len(held)} files")
