"""Cloud adapters: the ports of ``core.ports`` over the GCS, Pub/Sub, Azure Blob
and Azure Queue SDKs, one module per service. The only home of those SDKs.
"""

from typing import Any

METADATA_VALUE_SAFE = "".join(chr(c) for c in range(0x20, 0x7F) if chr(c) != "%")
"""What an Azure metadata value (an HTTP header) carries as it is: printable ASCII but ``%``; the rest is %XX."""

POOL_CONNECTIONS = 32
"""Connections each SDK client keeps per host. requests keeps 10, and the migration's steps make 16 requests at
once (the cutover's checks, the switch): each over the 10 was a new connection, closed after it with a warning."""


def pool_connections(session: Any, *, max_retries: Any = 0) -> Any:
    """``session`` (a ``requests.Session``) keeping ``POOL_CONNECTIONS`` connections per host; ``max_retries`` as
    the SDK's own adapter has it."""
    from requests.adapters import HTTPAdapter

    adapter = HTTPAdapter(pool_maxsize=POOL_CONNECTIONS, max_retries=max_retries)
    for scheme in ("http://", "https://"):
        session.mount(scheme, adapter)
    return session


def azure_session() -> Any:
    """A pooled ``requests.Session`` for an Azure Storage client: retries are azure-core's policy's, not the
    adapter's, as its own transport mounts it."""
    import requests
    from urllib3 import Retry

    return pool_connections(requests.Session(), max_retries=Retry(total=False, redirect=False, raise_on_status=False))
