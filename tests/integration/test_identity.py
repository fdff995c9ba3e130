"""Keyless cross-cloud identity: credentials built from settings, then checked against local token doubles.

The doubles stand in for Google's STS and IAM Credentials APIs, Entra's token
endpoint and the GCP metadata server. They are served over HTTPS with a test
certificate (MSAL refuses an http authority), and record every request, so the
tests check what google-auth and azure-identity really send: the grant type,
audience and subject-token type of the exchange, and the client assertion.
"""

from __future__ import annotations

import base64
import datetime
import http.server
import ipaddress
import json
import re
import shlex
import ssl
import threading
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import google.auth.exceptions
import google.auth.transport.requests
import pytest
from azure.identity import ClientAssertionCredential, DefaultAzureCredential
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from core.clouds import identity
from core.clouds.azure_blob import make_service_client
from core.errors import ConfigError
from tests.helper import deploy_dry_run

PROVIDER = "projects/123456/locations/global/workloadIdentityPools/azure-pool/providers/azure-tenant"
READER = "gray-migrate-reader@proj-1.iam.gserviceaccount.com"
TENANT = "11111111-2222-3333-4444-555555555555"
CLIENT = "66666666-7777-8888-9999-000000000000"
GOOGLE_ID_TOKEN = "google.id.token-of-the-runtime-service-account"
PRINCIPAL = "55555555-5555-5555-5555-555555555555"
TOKEN_EXCHANGE_APP_ID = "fb60f99c-7a34-4190-8149-302f77469936"
GCP_DEPLOY = ["--project", "proj-1", "--bucket", "bkt"]

IDENTITY_VARS = [
    "GCP_WORKLOAD_IDENTITY_PROVIDER", "GCP_SERVICE_ACCOUNT", "AZURE_TENANT_ID", "AZURE_CLIENT_ID",
    "AZURE_CLIENT_SECRET", "AZURE_CLIENT_CERTIFICATE_PATH", "AZURE_FEDERATED_TOKEN_FILE", "IDENTITY_ENDPOINT",
    "MSI_ENDPOINT", "AZURE_AUTHORITY_HOST", "GCE_METADATA_HOST", "STORAGE_EMULATOR_HOST",
    "AZURE_STORAGE_CONNECTION_STRING", "GOOGLE_APPLICATION_CREDENTIALS",
]  # fmt: skip


@pytest.fixture(autouse=True)
def clean_identity_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in IDENTITY_VARS:
        monkeypatch.delenv(name, raising=False)


@dataclass
class Seen:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    form: dict[str, str] = field(default_factory=dict)
    json: Any = None


@dataclass(frozen=True)
class ProviderTrust:
    """What the workload identity provider that ``deploy/gcp.py`` prints accepts: read from its ``create-oidc``."""

    issuer: str
    audiences: tuple[str, ...]
    condition: dict[str, str]
    """The attribute condition's ``assertion.CLAIM == 'VALUE'`` terms (joined by ``&&``)."""

    @classmethod
    def printed(cls) -> ProviderTrust:
        args = [*GCP_DEPLOY, "--azure-tenant-id", TENANT, "--azure-principal-id", PRINCIPAL]
        line = next(x for x in deploy_dry_run("gcp.py", *args) if "create-oidc" in x)
        flags = dict(t.split("=", 1) for t in shlex.split(line.split("create-oidc", 1)[1]) if t.startswith("--"))
        terms = dict(re.findall(r"assertion\.(\w+)\s*==\s*'([^']*)'", flags.get("--attribute-condition", "")))
        return cls(flags["--issuer-uri"], tuple(flags["--allowed-audiences"].split(",")), terms)

    def refusal(self, subject_token: str) -> str | None:
        """Why Google STS would refuse this Entra token (the checks it documents), or None."""
        claims = json.loads(base64.urlsafe_b64decode(subject_token.split(".")[1] + "=="))
        if claims.get("iss") != self.issuer:
            return f"the issuer {claims.get('iss')!r} is not {self.issuer!r}"
        if claims.get("aud") not in self.audiences:  # compared literally
            return f"The audience in ID Token [{claims.get('aud')}] does not match the expected audience."
        for claim, value in self.condition.items():
            if claims.get(claim) != value:
                return "The given credential is rejected by the attribute condition."
        return None


def entra_token(**claims: str) -> str:
    """A managed identity's v2 token for api://AzureADTokenExchange as Entra shapes it (unsigned: the double reads
    the claims only): the exchange app's id as ``aud``, the v2 issuer, the tenant and the identity's object id."""
    body = {"aud": TOKEN_EXCHANGE_APP_ID, "iss": f"https://login.microsoftonline.com/{TENANT}/v2.0", "tid": TENANT,
            "sub": PRINCIPAL, "oid": PRINCIPAL, "ver": "2.0", **claims}  # fmt: skip

    def part(value: dict[str, str]) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()

    return f"{part({'alg': 'RS256', 'typ': 'JWT'})}.{part(body)}.c2lnbmF0dXJl"


class TokenDouble:
    """One HTTPS server that answers as STS, IAM Credentials, Entra and the metadata server, and records requests.

    As STS it accepts only what the provider printed by ``deploy/gcp.py`` accepts (``ProviderTrust``).
    """

    def __init__(self, cert: Path, key: Path) -> None:
        self.seen: list[Seen] = []
        self.trust = ProviderTrust.printed()
        double = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _answer(self, status: int, body: Any) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _record(self) -> Seen:
                url = urllib.parse.urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length).decode() if length else ""
                seen = Seen(
                    self.command,
                    url.path,
                    dict(urllib.parse.parse_qsl(url.query)),
                    {k.lower(): v for k, v in self.headers.items()},
                )
                if "json" in self.headers.get("Content-Type", ""):
                    seen.json = json.loads(raw)
                elif raw:
                    seen.form = dict(urllib.parse.parse_qsl(raw))
                double.seen.append(seen)
                return seen

            def do_GET(self) -> None:
                seen = self._record()
                if seen.path.endswith("/.well-known/openid-configuration"):
                    tenant = seen.path.split("/")[1]
                    base = f"https://127.0.0.1:{double.port}/{tenant}"
                    return self._answer(200, {
                        "token_endpoint": f"{base}/oauth2/v2.0/token",
                        "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
                        "issuer": f"{base}/v2.0",
                    })  # fmt: skip
                self._answer(404, {"error": "not_found"})

            def do_POST(self) -> None:
                seen = self._record()
                if seen.path == "/v1/token":  # Google STS
                    refused = double.trust.refusal(seen.form["subject_token"])
                    if refused:
                        return self._answer(400, {"error": "invalid_grant", "error_description": refused})
                    return self._answer(200, {
                        "access_token": "federated-access-token", "issued_token_type":
                        "urn:ietf:params:oauth:token-type:access_token", "token_type": "Bearer", "expires_in": 3600,
                    })  # fmt: skip
                if seen.path.endswith(":generateAccessToken"):  # IAM Credentials
                    expiry = (datetime.datetime.now(datetime.UTC) + datetime.timedelta(hours=1)).strftime(
                        "%Y-%m-%dT%H:%M:%SZ"
                    )
                    return self._answer(200, {"accessToken": "impersonated-access-token", "expireTime": expiry})
                if seen.path.endswith("/oauth2/v2.0/token"):  # Entra
                    return self._answer(200, {
                        "access_token": "entra-access-token", "token_type": "Bearer", "expires_in": 3600,
                    })  # fmt: skip
                self._answer(404, {"error": "not_found"})

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert, key)
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.port = self.server.server_address[1]
        self.url = f"https://127.0.0.1:{self.port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class MetadataDouble:
    """The GCP metadata server's identity endpoint (plain http, as the real one)."""

    def __init__(self) -> None:
        self.seen: list[Seen] = []
        double = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                url = urllib.parse.urlsplit(self.path)
                double.seen.append(
                    Seen(
                        "GET",
                        url.path,
                        dict(urllib.parse.parse_qsl(url.query)),
                        {k.lower(): v for k, v in self.headers.items()},
                    )
                )
                ok = self.headers.get("Metadata-Flavor") == "Google" and url.path.endswith("/default/identity")
                data = GOOGLE_ID_TOKEN.encode() if ok else b"forbidden"
                self.send_response(200 if ok else 403)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.host = f"127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def test_certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (test data, made here, never a real secret)."""
    folder = tmp_path_factory.mktemp("tls")
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_path, key_path


@pytest.fixture
def tokens(test_certificate: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch) -> Iterator[TokenDouble]:
    cert, key = test_certificate
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(cert))  # requests (google-auth and azure-core) trusts the double
    double = TokenDouble(cert, key)
    yield double
    double.close()


@pytest.fixture
def metadata(monkeypatch: pytest.MonkeyPatch) -> Iterator[MetadataDouble]:
    double = MetadataDouble()
    monkeypatch.setenv("GCE_METADATA_HOST", double.host)
    yield double
    double.close()


class FixedEntraToken:
    """An azure-identity credential that returns one token and records the scopes asked for."""

    def __init__(self, token: str | None = None) -> None:
        self.token = token or entra_token()
        self.scopes: list[tuple[str, ...]] = []

    def get_token(self, *scopes: str, **kwargs: Any) -> Any:
        self.scopes.append(scopes)
        return type("AccessToken", (), {"token": self.token, "expires_on": 0})()


# --- built from settings, no network ---


def test_nothing_set_means_adc_and_default_azure_credential() -> None:
    assert identity.gcp_credentials() is None
    assert isinstance(identity.azure_credential(), DefaultAzureCredential)
    assert identity.describe() == {"gcs": "Application Default Credentials", "azure": "DefaultAzureCredential"}


def test_federated_gcp_credentials_from_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GCP_WORKLOAD_IDENTITY_PROVIDER", PROVIDER)
    monkeypatch.setenv("GCP_SERVICE_ACCOUNT", READER)
    credentials = identity.gcp_credentials()
    assert credentials.info["audience"] == f"//iam.googleapis.com/{PROVIDER}"
    assert credentials.info["subject_token_type"] == "urn:ietf:params:oauth:token-type:jwt"
    assert credentials.info["token_url"] == "https://sts.googleapis.com/v1/token"
    assert credentials.service_account_email == READER
    assert not credentials.valid, "no token is fetched when the credential is built"
    # The full resource name is accepted as well.
    monkeypatch.setenv("GCP_WORKLOAD_IDENTITY_PROVIDER", f"//iam.googleapis.com/{PROVIDER}")
    assert identity.gcp_credentials().info["audience"] == f"//iam.googleapis.com/{PROVIDER}"


@pytest.mark.parametrize(
    ("settings", "named"),
    [
        ({"GCP_WORKLOAD_IDENTITY_PROVIDER": PROVIDER}, "GCP_SERVICE_ACCOUNT"),
        ({"GCP_WORKLOAD_IDENTITY_PROVIDER": "projects/1/pools/x", "GCP_SERVICE_ACCOUNT": READER},
         "GCP_WORKLOAD_IDENTITY_PROVIDER"),
    ],
)  # fmt: skip
def test_a_missing_or_malformed_setting_is_named(
    settings: dict[str, str], named: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in settings.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError, match=named):
        identity.gcp_credentials()


def test_azure_federation_from_google_only_outside_azure(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AZURE_TENANT_ID", TENANT)
    monkeypatch.setenv("AZURE_CLIENT_ID", CLIENT)
    assert isinstance(identity.azure_credential(), ClientAssertionCredential)
    assert "federated credential from Google" in identity.describe()["azure"]
    monkeypatch.setenv("AZURE_STORAGE_ACCOUNT_URL", "https://acct.blob.core.windows.net")
    assert isinstance(make_service_client().credential, ClientAssertionCredential)
    # On Azure (the platform sets IDENTITY_ENDPOINT) the managed identity wins, through DefaultAzureCredential.
    monkeypatch.setenv("IDENTITY_ENDPOINT", "http://localhost:42356/msi/token")
    assert isinstance(identity.azure_credential(), DefaultAzureCredential)


def test_a_connection_string_wins_over_every_identity(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AZURE_TENANT_ID", TENANT)
    monkeypatch.setenv("AZURE_CLIENT_ID", CLIENT)
    monkeypatch.setenv("AZURE_STORAGE_ACCOUNT_URL", "https://acct.blob.core.windows.net")
    monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING", "BlobEndpoint=https://acct.blob.core.windows.net/;"
                       "SharedAccessSignature=sv=2021-12-02&sig=test")  # fmt: skip
    client = make_service_client()
    assert not isinstance(client.credential, ClientAssertionCredential)
    assert identity.describe()["azure"].startswith("a connection string")


# --- against the token doubles ---


def test_gcp_federation_sends_the_managed_identity_token_to_sts_then_impersonates(
    tokens: TokenDouble, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GCP_WORKLOAD_IDENTITY_PROVIDER", PROVIDER)
    monkeypatch.setenv("GCP_SERVICE_ACCOUNT", READER)
    entra = FixedEntraToken()
    credentials = identity.gcp_credentials(
        token_url=f"{tokens.url}/v1/token", iam_url=f"{tokens.url}/v1", azure_credential=entra
    )
    credentials.refresh(google.auth.transport.requests.Request())
    assert credentials.token == "impersonated-access-token"
    assert entra.scopes == [("api://AzureADTokenExchange/.default",)]
    sts, iam = tokens.seen
    assert sts.path == "/v1/token"
    assert sts.form["grant_type"] == "urn:ietf:params:oauth:grant-type:token-exchange"
    assert sts.form["audience"] == f"//iam.googleapis.com/{PROVIDER}"
    assert sts.form["subject_token_type"] == "urn:ietf:params:oauth:token-type:jwt"
    assert sts.form["subject_token"] == entra.token
    assert sts.form["requested_token_type"] == "urn:ietf:params:oauth:token-type:access_token"
    assert iam.path == f"/v1/projects/-/serviceAccounts/{READER}:generateAccessToken"
    assert iam.headers["authorization"] == "Bearer federated-access-token"
    assert iam.json["scope"] == ["https://www.googleapis.com/auth/cloud-platform"]


@pytest.mark.parametrize(
    ("claims", "refused"),
    [
        ({"aud": "api://another-app"}, "does not match the expected audience"),
        ({"iss": "https://sts.windows.net/11111111-2222-3333-4444-555555555555/"}, "is not"),  # a v1 token
        ({"tid": "99999999-2222-3333-4444-555555555555"}, "attribute condition"),
        ({"sub": "99999999-5555-5555-5555-555555555555"}, "attribute condition"),
    ],
    ids=["audience", "v1-issuer", "other-tenant", "other-identity"],
)
def test_sts_refuses_what_the_printed_provider_does_not_trust(
    tokens: TokenDouble, monkeypatch: pytest.MonkeyPatch, claims: dict[str, str], refused: str
) -> None:
    """The double's trust comes from deploy/gcp.py's create-oidc, so these fail if the deploy trusts too much."""
    monkeypatch.setenv("GCP_WORKLOAD_IDENTITY_PROVIDER", PROVIDER)
    monkeypatch.setenv("GCP_SERVICE_ACCOUNT", READER)
    credentials = identity.gcp_credentials(
        token_url=f"{tokens.url}/v1/token",
        iam_url=f"{tokens.url}/v1",
        azure_credential=FixedEntraToken(entra_token(**claims)),
    )
    with pytest.raises(google.auth.exceptions.OAuthError, match=refused):
        credentials.refresh(google.auth.transport.requests.Request())


def test_the_printed_provider_trusts_the_audience_entra_really_issues() -> None:
    trust = ProviderTrust.printed()
    assert trust.refusal(entra_token()) is None  # aud: the exchange app's id, as a v2 token carries it
    assert trust.refusal(entra_token(aud="api://AzureADTokenExchange")) is None


def test_azure_federation_sends_a_google_id_token_as_the_client_assertion(
    tokens: TokenDouble, metadata: MetadataDouble, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AZURE_TENANT_ID", TENANT)
    monkeypatch.setenv("AZURE_CLIENT_ID", CLIENT)
    monkeypatch.setenv("AZURE_AUTHORITY_HOST", tokens.url)
    token = identity.azure_credential().get_token("https://storage.azure.com/.default")
    assert token.token == "entra-access-token"
    (asked,) = metadata.seen
    assert asked.path == "/computeMetadata/v1/instance/service-accounts/default/identity"
    assert asked.query == {"audience": "api://AzureADTokenExchange", "format": "full"}
    assert asked.headers["metadata-flavor"] == "Google"
    posted = [s for s in tokens.seen if s.method == "POST"]
    assert len(posted) == 1
    form = posted[0].form
    assert posted[0].path == f"/{TENANT}/oauth2/v2.0/token"
    assert form["grant_type"] == "client_credentials"
    assert form["client_id"] == CLIENT
    assert form["client_assertion_type"] == "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
    assert form["client_assertion"] == GOOGLE_ID_TOKEN
    assert "https://storage.azure.com/.default" in form["scope"]


def test_no_metadata_server_is_a_config_error_that_says_what_to_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GCE_METADATA_HOST", "127.0.0.1:9")
    with pytest.raises(ConfigError, match="AZURE_TENANT_ID and AZURE_CLIENT_ID are set"):
        identity.google_id_token()


def test_blob_and_queue_clients_come_from_one_chooser(monkeypatch: pytest.MonkeyPatch) -> None:
    from core.clouds.azure_queue import make_queue_client

    monkeypatch.delenv("AZURE_STORAGE_CONNECTION_STRING", raising=False)
    monkeypatch.delenv("AZURE_STORAGE_ACCOUNT_URL", raising=False)
    for make in (make_service_client, lambda: make_queue_client("jobs")):
        with pytest.raises(ConfigError, match=r"AZURE_STORAGE_CONNECTION_STRING.*AZURE_STORAGE_ACCOUNT_URL"):
            make()
    monkeypatch.setenv("AZURE_TENANT_ID", TENANT)
    monkeypatch.setenv("AZURE_CLIENT_ID", CLIENT)
    monkeypatch.setenv("AZURE_STORAGE_ACCOUNT_URL", "https://acct.blob.core.windows.net")
    blobs, queue = make_service_client(), make_queue_client("jobs")
    assert blobs.url.startswith("https://acct.blob.core.windows.net")
    assert queue.url == "https://acct.queue.core.windows.net/jobs"
    assert isinstance(blobs.credential, ClientAssertionCredential) and isinstance(
        queue.credential, ClientAssertionCredential
    )
    monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING", "UseDevelopmentStorage=true")
    assert make_queue_client("jobs").url.startswith("http://127.0.0.1:10001/devstoreaccount1/jobs")
    assert make_service_client().url.startswith("http://127.0.0.1:10000/devstoreaccount1")


def test_the_federated_credentials_name_the_real_google_endpoints(monkeypatch: pytest.MonkeyPatch) -> None:
    """The defaults, not the doubles' URLs: STS, and IAM Credentials' generateAccessToken (the documented
    impersonation endpoint: ``iam.googleapis.com`` has none), for the service account that reads the bucket."""
    monkeypatch.setenv("GCP_WORKLOAD_IDENTITY_PROVIDER", PROVIDER)
    monkeypatch.setenv("GCP_SERVICE_ACCOUNT", READER)
    info = identity.gcp_credentials().info
    assert info["token_url"] == "https://sts.googleapis.com/v1/token"
    assert info["service_account_impersonation_url"] == (
        f"https://iamcredentials.googleapis.com/v1/projects/-/serviceAccounts/{READER}:generateAccessToken"
    )
    assert info["audience"] == f"//iam.googleapis.com/{PROVIDER}"


def test_every_gcs_client_uses_the_federated_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    """The pipeline's store and the migration's source both get them (not ADC, which Azure does not have)."""
    from google.auth import identity_pool

    from core.clouds import gcs
    from core.clouds.gcs_source import GcsSource

    monkeypatch.delenv("STORAGE_EMULATOR_HOST", raising=False)
    monkeypatch.setenv("GCP_WORKLOAD_IDENTITY_PROVIDER", PROVIDER)
    monkeypatch.setenv("GCP_SERVICE_ACCOUNT", READER)
    for client in (gcs.make_client(), GcsSource("b").client):
        assert isinstance(client._credentials, identity_pool.Credentials)
        assert client._credentials.service_account_email == READER
