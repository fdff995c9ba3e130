"""``Http``: one aiohttp session for a bulk copy's two requests per object (read from GCS, put to Azure).

aiohttp parses HTTP in C on one event loop: half the CPU per request of urllib3
driven from worker threads (1.24 against 0.68 ms per 4 KiB object, read and put,
on this project's 2-core machine), which is what bounds a copy of small objects.
Retries follow the urllib3 pools of the synchronous path: 5, with exponential
backoff from 0.2 s, on connection failures and the given statuses.
"""

from __future__ import annotations

import asyncio
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from types import TracebackType

import aiohttp
from yarl import URL

from core.errors import TransientError, transport_failure

RETRIES = 5
BACKOFF = 0.2
RETRY_STATUSES = frozenset({500, 502, 503, 504})


@dataclass(frozen=True)
class Reply:
    status: int
    headers: Mapping[str, str]
    data: bytes


class Http:
    """An aiohttp session made on entry, in the running loop, with at most ``limit`` connections per host."""

    def __init__(self, *, limit: int = 64, connect_timeout: float = 10, timeout: float = 300) -> None:
        self._limit = limit
        # One deadline per request (``total``): a per-read one (``sock_read``) is rescheduled on every chunk
        # received, 5% of the copy's CPU on small objects. The requests carry at most one block (8 MiB).
        self._timeout = aiohttp.ClientTimeout(total=timeout, sock_connect=connect_timeout)
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> Http:
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit_per_host=self._limit, limit=0),
            timeout=self._timeout,
            auto_decompress=False,  # bytes exactly as stored: a gzip-encoded object stays gzip
            skip_auto_headers=("Accept-Encoding", "Content-Type", "User-Agent"),
        )
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        if self._session is not None:
            await self._session.close()

    async def request(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str],
        body: bytes | None = None,
        what: str,
        retry_statuses: Collection[int] = RETRY_STATUSES,
    ) -> Reply:
        """The reply, after retrying transport failures and ``retry_statuses``; ``TransientError`` when they last
        (its words name no URL: a URL's query may be a SAS).

        ``what`` names the request in the error (``cannot read 'a.jpg' from GCS``). The URL is sent as given,
        already quoted: it is not normalised again.
        """
        assert self._session is not None, "use Http inside `async with`"
        for attempt in range(RETRIES + 1):
            try:
                sent = self._session.request(method, URL(url, encoded=True), headers=headers, data=body)
                async with sent as response:
                    data = await response.read()
                    if response.status not in retry_statuses:
                        return Reply(response.status, response.headers, data)
                    if attempt == RETRIES:  # in urllib3's words, as the synchronous path says it
                        raise TransientError(f"{what}: ResponseError: too many {response.status} error responses")
            except (aiohttp.ClientError, TimeoutError) as exc:
                if attempt == RETRIES:
                    raise TransientError(f"{what}: {transport_failure(exc)}") from exc
            await asyncio.sleep(BACKOFF * 2**attempt)
        raise AssertionError("unreachable")  # pragma: no cover
