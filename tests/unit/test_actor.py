"""Who a run record names for its start, cutover, abort and rollback: the platform's identity, never a secret."""

from __future__ import annotations

import base64
import json

import pytest

from migrate import actor


def header_of(headers: dict[str, str]):  # type: ignore[no-untyped-def]
    lowered = {k.lower(): v for k, v in headers.items()}
    return lambda name: lowered.get(name.lower(), "")


def id_token(**claims: str) -> str:
    def part(value: dict[str, str]) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()

    return f"{part({'alg': 'RS256'})}.{part(claims)}.c2lnbmF0dXJl"


def test_gcp_names_the_email_iam_checked() -> None:
    token = id_token(email="ops@example.com", sub="1234")
    assert actor.from_request(header_of({"Authorization": f"Bearer {token}"}), {}) == "google:ops@example.com"


def test_azure_names_easy_auth_or_a_fingerprint_of_the_key_never_the_key() -> None:
    assert (
        actor.from_request(header_of({"X-MS-CLIENT-PRINCIPAL-NAME": "ops@contoso.com"}), {}) == "azure:ops@contoso.com"
    )
    by_header = actor.from_request(header_of({"x-functions-key": "s3cr3t-operator-key"}), {})
    assert by_header.startswith("function key sha256:") and "s3cr3t" not in by_header
    assert actor.from_request(header_of({}), {"code": "s3cr3t-operator-key"}) == by_header
    assert actor.from_request(header_of({"x-functions-key": "another"}), {}) != by_header


@pytest.mark.parametrize("authorization", ["", "Bearer not-a-jwt", "Basic dXNlcjpwYXNz"])
def test_no_identity_is_unauthenticated(authorization: str) -> None:
    assert actor.from_request(header_of({"Authorization": authorization}), {}) == "unauthenticated"


def test_the_cli_names_the_operator(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(actor.ACTOR_VAR, "release-pipeline")
    assert actor.of_cli() == "release-pipeline"
    monkeypatch.delenv(actor.ACTOR_VAR)
    assert actor.of_cli().endswith(" (cli)") and "@" in actor.of_cli()
