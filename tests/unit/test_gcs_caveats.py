"""What the GCS source reports a copy cannot carry, from an object's JSON API representation (no network)."""

from __future__ import annotations

from google.auth.credentials import AnonymousCredentials
from google.cloud import storage

from core.clouds.gcs_source import details


def blob(**resource: object) -> storage.Blob:
    client = storage.Client(project="p", credentials=AnonymousCredentials())  # type: ignore[no-untyped-call]
    made = storage.Blob("a.bin", client.bucket("b"))
    made._set_properties({"name": "a.bin", "size": "3", "generation": "7", **resource})  # as a listing fills it
    return made


def test_a_plain_object_has_no_caveat() -> None:
    assert details(blob()).caveats == ()


def test_each_property_becomes_its_caveat() -> None:
    found = details(
        blob(
            temporaryHold=True,
            eventBasedHold=True,
            retentionExpirationTime="2030-01-01T00:00:00Z",
            customTime="2026-01-01T00:00:00Z",
            customerEncryption={"encryptionAlgorithm": "AES256", "keySha256": "abc"},
            kmsKeyName="projects/p/locations/l/keyRings/r/cryptoKeys/k",
        )
    )
    assert found.caveats == (
        "temporary-hold",
        "event-based-hold",
        "retention",
        "custom-time",
        "customer-supplied-key",
        "customer-managed-key",
    )
