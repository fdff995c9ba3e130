"""Cloud adapters: the ports of ``core.ports`` over the GCS, Pub/Sub, Azure Blob
and Azure Queue SDKs, one module per service. The only home of those SDKs.
"""
