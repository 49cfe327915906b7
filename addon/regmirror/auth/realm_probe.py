"""Learning an upstream's token realm when a token request comes before any challenge: one
`GET /v2/` to the upstream, with the mirror's own HTTP client."""

import logging

import httpx

from ..routing.upstreams import Upstream
from ..transport.side_requests import SideRequests
from .challenge import Challenge
from .challenges import NO_TOKEN_AUTH, mirror_challenge

logger = logging.getLogger(__name__)


class ProbeFailed(Exception):
    def __init__(self, status: int, message: str, unreachable: bool) -> None:
        super().__init__(message)
        self.status, self.unreachable = status, unreachable


class RealmProbe:
    def __init__(self, side: SideRequests) -> None:
        self.side = side

    async def learn(self, upstream: Upstream) -> Challenge:
        """The upstream's challenge, or NO_TOKEN_AUTH. Raises ProbeFailed (502, or 504 when
        the upstream did not answer in time)."""
        try:
            r = await self.side.client().get(upstream.base + "/v2/")
            rewritten = None
            if r.status_code == 401:
                rewritten = mirror_challenge(r.headers.get("WWW-Authenticate", ""), "")
        except (httpx.HTTPError, ValueError) as e:
            status = 504 if isinstance(e, httpx.TimeoutException) else 502
            message = f"cannot learn the token realm of {upstream.base}: {e or type(e).__name__}"
            logger.warning(message)
            raise ProbeFailed(status, message, isinstance(e, httpx.TransportError)) from None
        return rewritten[0] if rewritten else NO_TOKEN_AUTH
