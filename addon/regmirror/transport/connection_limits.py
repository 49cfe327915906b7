"""A bound on the client connections one address may have served at once.

Open client connections are counted per peer IP address, in the order they opened. A
connection's requests are served while fewer than `regmirror_max_connections_per_client`
older connections from the same address are still open: with N open, the requests of the
N+1th get 429 TOOMANYREQUESTS and never reach an upstream. When older connections close, the
younger ones move up. A pull uses a handful of connections (dockerd downloads three layers at
a time by default), so the default only stops floods.
"""

import itertools

from mitmproxy import connection, ctx, exceptions, http

from .. import errors
from ..answers import refuse

OPTION = "regmirror_max_connections_per_client"
DEFAULT_LIMIT = 256
RETRY_AFTER = 5  # seconds: a pull's other connections finish or go idle by then


class OpenConnections:
    """Open client connections per address, oldest first."""

    def __init__(self) -> None:
        self.by_address: dict[str, dict[str, None]] = {}  # insertion-ordered sets

    def opened(self, address: str, conn_id: str) -> None:
        self.by_address.setdefault(address, {})[conn_id] = None

    def closed(self, address: str, conn_id: str) -> None:
        conns = self.by_address.get(address, {})
        conns.pop(conn_id, None)
        if not conns:
            self.by_address.pop(address, None)

    def count(self, address: str) -> int:
        return len(self.by_address.get(address, {}))

    def served(self, address: str, conn_id: str, limit: int) -> bool:
        """Whether the connection is among the `limit` oldest open ones of its address
        (limit 0: no limit). A connection opened before the addon was loaded is served."""
        conns = self.by_address.get(address, {})
        if not limit or conn_id not in conns:
            return True
        return conn_id in itertools.islice(conns, limit)


class ConnectionLimits:
    def __init__(self) -> None:
        self.open = OpenConnections()

    def load(self, loader) -> None:
        loader.add_option(
            OPTION,
            int,
            DEFAULT_LIMIT,
            """
            Client connections one IP address may have served at once; 0: no limit. A
            connection's requests are answered while fewer than this many older connections
            from the same address are open, idle or slow ones included: with N open, requests
            on the N+1th get 429 TOOMANYREQUESTS with Retry-After, and an HTTP/1 connection is
            closed after that answer. Behind a load balancer or a NAT all its clients share
            one address: raise the limit to cover them, or set 0.
            """,
        )

    def configure(self, updated: set[str]) -> None:
        if OPTION in updated and getattr(ctx.options, OPTION) < 0:
            raise exceptions.OptionsError(f"{OPTION} must be 0 (no limit) or more")

    def client_connected(self, client: connection.Client) -> None:
        self.open.opened(client.peername[0], client.id)

    def client_disconnected(self, client: connection.Client) -> None:
        self.open.closed(client.peername[0], client.id)

    def requestheaders(self, flow: http.HTTPFlow) -> None:
        if flow.response or flow.error or not flow.live:
            return
        limit = getattr(ctx.options, OPTION)
        address, conn_id = flow.client_conn.peername[0], flow.client_conn.id
        if self.open.served(address, conn_id, limit):
            return
        count = self.open.count(address)
        message = f"{count} connections open from {address}; at most {limit} are served at once"
        headers = {"Retry-After": str(RETRY_AFTER), "Connection": "close"}
        refuse(flow, "limits", 429, errors.TOOMANYREQUESTS, message, headers=headers)
