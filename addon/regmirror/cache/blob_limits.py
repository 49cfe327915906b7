"""A bound on the connections one client address may have open on the data plane at once
(`regmirror_blob_max_connections_per_client`), like the API port's: a connection over it is
closed as soon as it is accepted, before anything is read. A pull opens a few."""

import asyncio
from collections import Counter
from collections.abc import Callable

OPTION = "regmirror_blob_max_connections_per_client"
DEFAULT_LIMIT = 256


class ClientConnections:
    def __init__(self, limit: Callable[[], int]) -> None:
        self.limit = limit  # 0: no limit
        self.open: Counter[str] = Counter()

    def admit(self, address: str) -> Callable[[], None] | None:
        """Count a new connection from `address`; None when it is over the limit, else the
        call that ends it (once; later calls do nothing)."""
        limit = self.limit()
        if limit and self.open[address] >= limit:
            return None
        self.open[address] += 1
        released = False

        def release() -> None:
            nonlocal released
            if not released:
                released = True
                self.open[address] -= 1
                if not self.open[address]:
                    del self.open[address]

        return release


class Counted(asyncio.Protocol):
    """A connection's protocol (aiohttp's, which has __slots__) that calls `release` when the
    connection is lost."""

    def __init__(self, inner: asyncio.Protocol, release: Callable[[], None]) -> None:
        self.inner, self.release = inner, release

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        self.inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self.inner.eof_received()

    def pause_writing(self) -> None:
        self.inner.pause_writing()

    def resume_writing(self) -> None:
        self.inner.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        self.release()
        self.inner.connection_lost(exc)
