"""Auth levels of the deployed HTTP functions, as README documents them.

- Azure: ``POST {base}/jobs`` is auth level FUNCTION, so the real host answers 401 without a key
  (the devhost and ``func start`` do not check keys, hence a live test);
- GCP: the API is deployed ``--no-allow-unauthenticated``, so a request without an identity token
  is refused by IAM in front of the function (403, or 401) and never reaches it.

Skipped unless ``LIVE_AZURE_API_URL`` (e.g. ``https://APP.azurewebsites.net/api``) or
``LIVE_GCP_API_URL`` (the ``api`` function's URL) names a deployment made by ``deploy/``.
"""

from __future__ import annotations

import os
import urllib.error
import urllib.request

import pytest

pytestmark = pytest.mark.live


def post_without_credentials(url: str) -> int:
    request = urllib.request.Request(url, data=b"not read", method="POST", headers={"Content-Type": "image/jpeg"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code


def base(variable: str) -> str:
    url = os.environ.get(variable)
    if not url:
        pytest.skip(f"set {variable} to the deployed API's base URL to check its auth level")
    return url.rstrip("/")


def test_azure_upload_without_a_function_key_is_401() -> None:
    assert post_without_credentials(base("LIVE_AZURE_API_URL") + "/jobs") == 401


def test_gcp_upload_without_an_identity_token_is_refused() -> None:
    assert post_without_credentials(base("LIVE_GCP_API_URL") + "/jobs") in (401, 403)
