"""Where a migration reads and writes: ``gs://`` and ``az://`` locations, opened and checked.

Shared by the CLI and the HTTP routes (``migrate.http``), so that neither imports the other.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from core.errors import ConfigError, CoreError, NotFound, TransientError


class UsageError(Exception):
    """A problem with what was asked; exit code 2 with one sentence."""


@dataclass(frozen=True)
class Location:
    scheme: str
    container: str
    prefix: str

    def __str__(self) -> str:
        return f"{self.scheme}://{self.container}/{self.prefix}"


def parse_location(uri: str, scheme: str) -> Location:
    """``gs://BUCKET[/PREFIX]`` or ``az://CONTAINER[/PREFIX]``."""
    given, sep, rest = uri.partition("://")
    if not sep or given != scheme:
        raise UsageError(f"{uri!r} is not a {scheme}:// URL (expected {scheme}://NAME[/PREFIX])")
    container, _, prefix = rest.partition("/")
    if not container:
        raise UsageError(f"{uri!r} names no {'bucket' if scheme == 'gs' else 'container'}")
    return Location(scheme, container, prefix)


def open_ends(source_at: Location, dest_at: Location, *, checked: bool = True) -> tuple[Any, Any]:
    """The source bucket and destination container, checked to exist and answer (unless ``checked`` is False)."""
    from core.clouds.azure_destination import AzureBlobDestination
    from core.clouds.gcs_source import GcsSource

    try:
        source = GcsSource(source_at.container)
        dest = AzureBlobDestination(dest_at.container)
        if checked:
            source.check(source_at.prefix)
            dest.check(dest_at.prefix)
    except NotFound as exc:
        raise UsageError(str(exc)) from exc
    except (ConfigError, TransientError) as exc:
        raise UsageError(f"cannot use {source_at} or {dest_at}: {exc}") from exc
    except CoreError as exc:
        raise UsageError(f"cannot use {source_at} or {dest_at} (check the credentials): {exc}") from exc
    return source, dest
