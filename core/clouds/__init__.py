"""Cloud adapters: the ports of ``core.ports`` over the GCS, Pub/Sub, Azure Blob
and Azure Queue SDKs, one module per service. The only home of those SDKs.
"""

METADATA_VALUE_SAFE = "".join(chr(c) for c in range(0x20, 0x7F) if chr(c) != "%")
"""What an Azure metadata value (an HTTP header) carries as it is: printable ASCII but ``%``; the rest is %XX."""
