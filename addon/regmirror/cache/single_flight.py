"""Single flight before a fill has begun: the first miss of a blob leads, and misses of the
same blob through the same repository that come before the leader's answer has arrived
wait for it (up to a bound), then look again: by then the fill is in progress, and they
follow it as the file grows (lookup.py), or it failed and they go upstream themselves.
Without this, clients that ask at the same moment (8 layers pulled by 8 nodes) each fetch
the blob upstream, since a fill exists only from its response headers on."""

import asyncio
import contextlib
from typing import NamedTuple

from mitmproxy import http

from ..record import Route
from . import decisions


class Lead(NamedTuple):
    flow_id: str
    registry: str
    repository: str
    provenance: str
    done: asyncio.Event


class Leads:
    def __init__(self) -> None:
        self._leads: dict[str, Lead] = {}  # digest -> the miss that fetches it

    async def wait_or_lead(
        self, flow: http.HTTPFlow, r: Route, digest: str, provenance: str, timeout: float
    ) -> bool:
        """True when this miss waited for another's answer (and should look again); False
        when it leads, or may not wait for that one (another repository, or content fetched
        with a client's own credentials)."""
        lead = self._leads.get(digest)
        if lead is None:
            event = asyncio.Event()
            self._leads[digest] = Lead(flow.id, r["registry"], r["name"], provenance, event)
            return False
        same = (lead.registry, lead.repository) == (r["registry"], r["name"])
        if not same or not decisions.may_read(lead.provenance, client_checked=False):
            return False
        with contextlib.suppress(TimeoutError):  # then look again all the same
            await asyncio.wait_for(lead.done.wait(), timeout)
        return True

    def end(self, flow: http.HTTPFlow, digest: str) -> None:
        """The leader's answer has arrived (its fill, if any, has begun), or it failed."""
        lead = self._leads.get(digest)
        if lead is not None and lead.flow_id == flow.id:
            del self._leads[digest]
            lead.done.set()
