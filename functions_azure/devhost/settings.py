"""The host's settings that the devhost honours: host.json, read once, and the app settings that override it."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
OVERRIDE_PREFIX = "AzureFunctionsJobHost__extensions__queues__"


@dataclass(frozen=True)
class HostSettings:
    """host.json's queue and HTTP settings, with the host's defaults; times in seconds."""

    max_dequeue_count: int = 5
    visibility_timeout: float = 0.0
    batch_size: int = 16
    new_batch_threshold: int = 8
    max_polling_interval: float = 60.0
    route_prefix: str = "api"

    @classmethod
    def load(cls, path: Path = ROOT / "host.json", environ: Mapping[str, str] = os.environ) -> HostSettings:
        """Read ``path`` once. As on the real host, an app setting ``AzureFunctionsJobHost__extensions__queues__NAME``
        overrides host.json's ``NAME`` (local settings use it for a short polling interval; host.json, which ships,
        keeps the production value)."""
        extensions = json.loads(path.read_text()).get("extensions", {})
        queues = dict(extensions.get("queues", {}))
        queues.update({k[len(OVERRIDE_PREFIX) :]: v for k, v in environ.items() if k.startswith(OVERRIDE_PREFIX) and v})
        batch_size = int(queues.get("batchSize", cls.batch_size))
        return cls(
            max_dequeue_count=int(queues.get("maxDequeueCount", cls.max_dequeue_count)),
            visibility_timeout=seconds(queues.get("visibilityTimeout", "00:00:00")),
            batch_size=batch_size,
            new_batch_threshold=int(queues.get("newBatchThreshold", batch_size // 2)),
            max_polling_interval=seconds(queues.get("maxPollingInterval", "00:01:00")),
            route_prefix=extensions.get("http", {}).get("routePrefix", cls.route_prefix),
        )


def seconds(span: str) -> float:
    """A host.json time span, ``hh:mm:ss[.fff]``, in seconds."""
    hours, minutes, secs = span.split(":")
    return timedelta(hours=int(hours), minutes=int(minutes), seconds=float(secs)).total_seconds()


def resolve(template: str, environ: Mapping[str, str] = os.environ) -> str:
    """Replace ``%SETTING%`` binding expressions with app settings (environment variables)."""
    return re.sub(r"%([A-Za-z0-9_]+)%", lambda m: environ.get(m.group(1), ""), template)
