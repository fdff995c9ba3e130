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


def test_a_notification_resource_gives_the_same_details_as_a_listing() -> None:
    from core.clouds.gcs_source import details_from_resource

    resource = {"kind": "storage#object", "name": "uploads/a.jpg", "bucket": "b", "generation": "1732", "size": "5",
                "md5Hash": "XUFAKrxLKna5cZ2REBfFkg==", "crc32c": "yZRlqg==", "contentType": "image/jpeg",
                "metadata": {"owner": "ops"}, "storageClass": "STANDARD",
                "timeCreated": "2026-11-28T02:00:00.123Z"}  # fmt: skip
    found = details_from_resource(resource)
    assert found is not None
    assert (found.key, found.size, found.generation, found.md5) == ("uploads/a.jpg", 5, "1732",
                                                                     "5d41402abc4b2a76b9719d911017c592")  # fmt: skip
    assert (found.crc32c, found.content_type, dict(found.metadata)) == ("yZRlqg==", "image/jpeg", {"owner": "ops"})
    assert found.created is not None and found.created.year == 2026
    assert details_from_resource({"name": "x", "bucket": "b"}) is None, "a partial resource is not trusted"
