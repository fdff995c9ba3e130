"""A small local Functions host: ``python -m functions_azure.devhost [--port 7071]``.

Azure Functions Core Tools (``func start``) cannot be installed everywhere, so
this dispatcher drives the real handlers of ``function_app.py`` the way the
host does, against the storage account in ``AzureWebJobsStorage`` (Azurite):

- ``http``: every ``route`` is served on ``http://127.0.0.1:PORT/api/...`` as
  ``func.HttpRequest`` objects, bodies read by length or chunked up to the
  host's 100 MB (413 beyond). No function key is required locally, as with
  ``func start``.
- ``queues``: each ``queue_trigger`` queue is drained with the host's lease,
  retry, poison-queue, batch and polling semantics (``settings``: host.json and
  its ``AzureFunctionsJobHost__extensions__queues__*`` overrides).
- ``blobs``: a blob trigger with ``source=EventGrid`` is driven by
  ``Microsoft.Storage.BlobCreated`` events posted to the blobs extension's
  webhook. Locally ``devstack.eventgrid`` posts them as soon as a blob is
  committed to Azurite; nothing here lists a container.

``app.get_functions()`` is called once per process, when ``DevHost`` is made.
Not part of the deployed app (``.funcignore``).
"""

from functions_azure.devhost.blobs import blob_argument
from functions_azure.devhost.host import DevHost, main
from functions_azure.devhost.settings import HostSettings

__all__ = ["DevHost", "HostSettings", "blob_argument", "main"]
