"""Which credential each cloud's SDK gets: keyless, federated identity across the clouds by default.

Reading GCS from Azure (the Azure migration functions, or the CLI run on Azure):
GCP Workload Identity Federation trusts the app's managed identity. The managed
identity's Entra token (audience ``api://AzureADTokenExchange``) is the subject
token; Google's STS exchanges it, and the federated principal impersonates a
service account that may only read the source bucket (and sign URLs for itself).

Writing to Azure from GCP (the GCP migration functions and ``POST /migrations``):
a user-assigned managed identity with a federated credential whose issuer is
``https://accounts.google.com`` and whose subject is the runtime service
account's unique id. azure-identity's ``ClientAssertionCredential`` is fed a
Google ID token for ``api://AzureADTokenExchange`` from the metadata server.

Which credential wins, first match (docs/deploy.md, "Cross-cloud identity", has the table):

GCS: ``STORAGE_EMULATOR_HOST`` (anonymous, local) > ``GCP_WORKLOAD_IDENTITY_PROVIDER``
with ``GCP_SERVICE_ACCOUNT`` (federated) > Application Default Credentials (the
runtime service account on GCP; a key file in ``GOOGLE_APPLICATION_CREDENTIALS``
is the weaker, opt-in fallback).

Azure: ``AZURE_STORAGE_CONNECTION_STRING`` (Azurite, an account key or a SAS: the
weaker fallback) > ``AZURE_STORAGE_ACCOUNT_URL`` with ``AZURE_TENANT_ID`` and
``AZURE_CLIENT_ID`` outside Azure and with no other azure-identity credential set
(federated from Google) > ``AZURE_STORAGE_ACCOUNT_URL`` with ``DefaultAzureCredential``
(the managed identity on Azure, ``az login`` on a workstation).

Nothing here reaches the network when a credential is built: tokens are fetched
on first use, and the SDKs (azure-identity, google-auth's identity pool) are
imported only when that credential is asked for.
"""

from __future__ import annotations

import os
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from typing import Any, TypeVar

from core.errors import ConfigError

WIF_PROVIDER_VAR = "GCP_WORKLOAD_IDENTITY_PROVIDER"
GCP_SERVICE_ACCOUNT_VAR = "GCP_SERVICE_ACCOUNT"
TENANT_VAR = "AZURE_TENANT_ID"
CLIENT_VAR = "AZURE_CLIENT_ID"
AUTHORITY_VAR = "AZURE_AUTHORITY_HOST"
METADATA_HOST_VAR = "GCE_METADATA_HOST"
CONNECTION_STRING_VAR = "AZURE_STORAGE_CONNECTION_STRING"
ACCOUNT_URL_VAR = "AZURE_STORAGE_ACCOUNT_URL"

TOKEN_EXCHANGE_AUDIENCE = "api://AzureADTokenExchange"
"""The audience of both subject tokens: Entra's documented one for federated credentials."""
STS_URL = "https://sts.googleapis.com/v1/token"
IAM_CREDENTIALS_URL = "https://iamcredentials.googleapis.com/v1"
JWT_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:jwt"
GCS_SCOPES = ["https://www.googleapis.com/auth/cloud-platform"]
# azure-identity's own settings for its other credentials: when one is set, it is meant to win.
_OTHER_AZURE_CREDENTIALS = (
    "AZURE_CLIENT_SECRET",
    "AZURE_CLIENT_CERTIFICATE_PATH",
    "AZURE_FEDERATED_TOKEN_FILE",
    "IDENTITY_ENDPOINT",  # set by App Service and Functions: the managed identity is there
    "MSI_ENDPOINT",
)


def _env(name: str) -> str:
    return os.environ.get(name, "").strip()


def wif_audience(provider: str) -> str:
    """The STS audience of a provider given as ``projects/N/locations/global/workloadIdentityPools/P/providers/X``."""
    name = provider.removeprefix("//iam.googleapis.com/").strip("/")
    parts = name.split("/")
    if len(parts) != 8 or parts[0::2] != ["projects", "locations", "workloadIdentityPools", "providers"]:
        raise ConfigError(
            f"{WIF_PROVIDER_VAR} must be projects/NUMBER/locations/global/workloadIdentityPools/POOL/providers/ID,"
            f" got {provider!r}"
        )
    return f"//iam.googleapis.com/{name}"


def gcp_credentials(
    *, token_url: str = STS_URL, iam_url: str = IAM_CREDENTIALS_URL, azure_credential: Any = None
) -> Any:
    """Federated Google credentials when ``GCP_WORKLOAD_IDENTITY_PROVIDER`` is set, else None (use ADC).

    ``token_url``, ``iam_url`` and ``azure_credential`` exist for tests: a local
    token-exchange double and an Entra token of the test's making.
    """
    provider = _env(WIF_PROVIDER_VAR)
    if not provider:
        return None
    audience = wif_audience(provider)
    account = _env(GCP_SERVICE_ACCOUNT_VAR)
    if not account:
        raise ConfigError(
            f"{WIF_PROVIDER_VAR} is set but {GCP_SERVICE_ACCOUNT_VAR} is not: export {GCP_SERVICE_ACCOUNT_VAR}="
            "the email of the service account that reads the source bucket"
        )
    from google.auth import identity_pool

    class ManagedIdentityToken(identity_pool.SubjectTokenSupplier):
        """The Azure managed identity's Entra token, as the subject token of the exchange."""

        def __init__(self, credential: Any) -> None:
            self._credential = credential

        def get_subject_token(self, context: Any, request: Any) -> str:
            if self._credential is None:
                from azure.identity import ManagedIdentityCredential

                self._credential = ManagedIdentityCredential()
            return str(self._credential.get_token(f"{TOKEN_EXCHANGE_AUDIENCE}/.default").token)

    return identity_pool.Credentials(  # type: ignore[no-untyped-call]
        audience=audience,
        subject_token_type=JWT_TOKEN_TYPE,
        token_url=token_url,
        subject_token_supplier=ManagedIdentityToken(azure_credential),
        service_account_impersonation_url=f"{iam_url}/projects/-/serviceAccounts/{account}:generateAccessToken",
        scopes=GCS_SCOPES,
    )


def google_federation_for_azure() -> bool:
    """True when Azure should be reached with a Google ID token (a federated credential, from GCP)."""
    return bool(_env(TENANT_VAR) and _env(CLIENT_VAR)) and not any(_env(v) for v in _OTHER_AZURE_CREDENTIALS)


def azure_credential() -> Any:
    """The Entra credential for ``AZURE_STORAGE_ACCOUNT_URL``: federated from Google, else DefaultAzureCredential."""
    if not google_federation_for_azure():
        from azure.identity import DefaultAzureCredential

        return DefaultAzureCredential()
    from azure.identity import ClientAssertionCredential

    options: dict[str, Any] = {}
    if _env(AUTHORITY_VAR):  # a sovereign cloud, or a test's token double: no instance discovery there
        options = {"authority": _env(AUTHORITY_VAR), "disable_instance_discovery": True}
    return ClientAssertionCredential(_env(TENANT_VAR), _env(CLIENT_VAR), google_id_token, **options)


T = TypeVar("T")


def azure_storage_client(
    service: str, from_connection_string: Callable[[str], T], from_account_url: Callable[[str, Any], T]
) -> T:
    """A client of the storage account's ``service`` ("blob" or "queue"), for the blob and queue adapters alike.

    ``AZURE_STORAGE_CONNECTION_STRING`` wins (Azurite, or a SAS); else ``AZURE_STORAGE_ACCOUNT_URL`` (the blob
    endpoint; the queue endpoint is derived from it) with ``azure_credential()``; else ``ConfigError`` naming both.
    """
    connection_string = _env(CONNECTION_STRING_VAR)
    if connection_string:
        return from_connection_string(connection_string)
    account_url = _env(ACCOUNT_URL_VAR)
    if account_url:
        return from_account_url(account_url.replace(".blob.", f".{service}."), azure_credential())
    raise ConfigError(f"set {CONNECTION_STRING_VAR} (UseDevelopmentStorage=true for Azurite) or {ACCOUNT_URL_VAR}")


def google_id_token(audience: str = TOKEN_EXCHANGE_AUDIENCE) -> str:
    """An ID token of this GCP workload's service account for ``audience``, from the metadata server."""
    host = _env(METADATA_HOST_VAR) or "metadata.google.internal"
    query = urllib.parse.urlencode({"audience": audience, "format": "full"})
    url = f"http://{host}/computeMetadata/v1/instance/service-accounts/default/identity?{query}"
    request = urllib.request.Request(url, headers={"Metadata-Flavor": "Google"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return str(response.read().decode().strip())
    except (urllib.error.URLError, OSError) as exc:
        raise ConfigError(
            f"{TENANT_VAR} and {CLIENT_VAR} are set, so Azure is reached with a Google ID token, but the GCP "
            f"metadata server at {host} did not give one ({exc}). Outside GCP, unset them (DefaultAzureCredential "
            "is then used) or set AZURE_STORAGE_CONNECTION_STRING"
        ) from exc


def describe() -> dict[str, str]:
    """Which credential each side would use now, in words (for ``migrate check`` and logs); no secrets."""
    if _env("STORAGE_EMULATOR_HOST"):
        gcs = f"anonymous, to the emulator at {_env('STORAGE_EMULATOR_HOST')}"
    elif _env(WIF_PROVIDER_VAR):
        gcs = f"workload identity federation ({_env(WIF_PROVIDER_VAR)}) as {_env(GCP_SERVICE_ACCOUNT_VAR) or '?'}"
    elif _env("GOOGLE_APPLICATION_CREDENTIALS"):
        gcs = "a key file (GOOGLE_APPLICATION_CREDENTIALS): the weaker fallback"
    else:
        gcs = "Application Default Credentials"
    if _env(CONNECTION_STRING_VAR):
        azure = "a connection string (AZURE_STORAGE_CONNECTION_STRING)"
    elif google_federation_for_azure():
        azure = f"a federated credential from Google (client {_env(CLIENT_VAR)}, tenant {_env(TENANT_VAR)})"
    else:
        azure = "DefaultAzureCredential"
    return {"gcs": gcs, "azure": azure}
