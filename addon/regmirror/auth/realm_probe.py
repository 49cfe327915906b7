"""Learning an upstream's token realm when a token request comes before any challenge: one
`GET /v2/` to the upstream, with the mirror's own HTTP client."""

import logging

import httpx
from mitmproxy import ctx

from ..routing.upstreams import Upstream
from .challenge import Challenge
from .challenges import NO_TOKEN_AUTH, mirror_challenge

logger = logging.getLogger(__name__)


class ProbeFailed(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class RealmProbe:
    def __init__(self) -> None:
        self.client: httpx.AsyncClient | None = None

    async def learn(self, upstream: Upstream) -> Challenge:
        """The upstream's challenge, or NO_TOKEN_AUTH. Raises ProbeFailed (502, or 504 when
        the upstream did not answer in time)."""
        if self.client is None:
            self.client = httpx.AsyncClient(
                verify=not ctx.options.ssl_insecure,
                timeout=ctx.options.regmirror_upstream_timeout,
            )
        try:
            r = await self.client.get(upstream.base + "/v2/")
            rewritten = None
            if r.status_code == 401:
                rewritten = mirror_challenge(r.headers.get("WWW-Authenticate", ""), "")
        except (httpx.HTTPError, ValueError) as e:
            status = 504 if isinstance(e, httpx.TimeoutException) else 502
            message = f"cannot learn the token realm of {upstream.base}: {e or type(e).__name__}"
            logger.warning(message)
            raise ProbeFailed(status, message) from None
        return rewritten[0] if rewritten else NO_TOKEN_AUTH

    async def close(self) -> None:
        if self.client:
            await self.client.aclose()
