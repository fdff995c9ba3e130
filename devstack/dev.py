"""``make dev``: the local stack in the foreground until Ctrl-C.

Once every part answers it writes ``.dev/stack.json``::

    {"gcp_api": URL, "gcp_migrations_api": URL, "azure_api": URL|null, "gcs_endpoint": URL, "gcs_bucket": NAME,
     "pubsub_emulator": "HOST:PORT"|null, "azure_connection_string": STR, "azure_container": NAME}

and removes it when everything has stopped. GCP: the chain of ``devstack.gcp``;
Azure: Azurite and the devhost of ``devstack.azure``.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

from devstack import lifetime
from devstack.emulators import ROOT
from devstack.stacks import both_clouds

STACK_FILE = ROOT / ".dev" / "stack.json"
STACK_FILE_VAR = "DEV_STACK_FILE"  # another path for the file (tests)
BUCKET = "grayscale"
CONTAINER = "grayscale"


def write_stack_file(description: dict[str, Any], path: Path = STACK_FILE) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps(description, indent=2) + "\n")
    temporary.replace(path)  # readers never see half a file


def main() -> int:
    # Until the stack is up, SIGTERM and SIGHUP stop it as Ctrl-C does: the ExitStack unwinds.
    for stop in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(stop, signal.default_int_handler)
    stack_file = Path(os.environ.get(STACK_FILE_VAR) or STACK_FILE)
    try:
        with contextlib.ExitStack() as stack:
            stack.callback(lambda: stack_file.unlink(missing_ok=True))
            gcp, azure = both_clouds(stack, bucket=BUCKET, container=CONTAINER)
            description = {**gcp.describe(), **azure.describe()}
            write_stack_file(description, stack_file)
            for note in (gcp.note, azure.note):
                if note:
                    print(f"note: {note}")
            print(json.dumps(description, indent=2))
            print(
                f"wrote {stack_file}; upload pages: {gcp.api_url}/ and {azure.api_url}/; Ctrl-C stops everything",
                flush=True,
            )
            lifetime.wait_for_stop()
            print("stopping", flush=True)
    except KeyboardInterrupt:  # a stop while starting
        pass
    print("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
