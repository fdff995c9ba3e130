"""core.errors.raise_for_status: one translation of a storage service's HTTP status, for every adapter."""

from __future__ import annotations

import pytest

from core.errors import BadRequest, Conflict, CoreError, Forbidden, NotFound, TransientError, raise_for_status


@pytest.mark.parametrize("status", [200, 201, 204, 206])
def test_a_success_raises_nothing(status: int) -> None:
    raise_for_status(status, "GCS", "object 'a'")


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (404, NotFound),
        (409, Conflict),
        (412, Conflict),
        (401, Forbidden),
        (403, Forbidden),
        (408, TransientError),
        (429, TransientError),
        (500, TransientError),
        (503, TransientError),
        (400, BadRequest),
        (416, BadRequest),
        (304, BadRequest),
    ],
)
def test_each_status_means_one_error_naming_the_service_the_subject_and_the_code(
    status: int, error: type[CoreError]
) -> None:
    with pytest.raises(error) as raised:
        raise_for_status(status, "Azure Storage", "'a/b.jpg'", "SomeErrorCode")
    assert type(raised.value) is error
    assert "'a/b.jpg'" in str(raised.value) and f"{status} SomeErrorCode" in str(raised.value)
    assert "Azure Storage" in str(raised.value) or error is Conflict


def test_forbidden_is_also_a_permission_error_and_a_bad_request() -> None:
    with pytest.raises(PermissionError):
        raise_for_status(403, "GCS", "object 'x'")
    with pytest.raises(BadRequest, match="check the credentials"):
        raise_for_status(401, "GCS", "object 'x'")
