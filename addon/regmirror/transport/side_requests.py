"""The mirror's own requests to an upstream, beside the clients' flows: learning a token
realm (auth/realm_probe.py), revalidating a cached tag with a HEAD, and asking whether the
upstream accepts a client's token for a repository (cache/). They verify TLS as mitmproxy
does for the flows (`ssl_insecure`, `ssl_verify_upstream_trusted_ca`, `..._confdir`) and
give up after `regmirror_upstream_timeout`."""

import logging
import ssl
from typing import NamedTuple

import httpx
from mitmproxy import ctx, http

# Request headers a side request takes from the client's: what the upstream answers by.
PASSED_HEADERS = ("authorization", "accept")
MAX_CONNECTIONS = 32
# httpx logs every request at INFO: the mirror's log already has a line per operation.
logging.getLogger("httpx").setLevel(logging.WARNING)


class SideAnswer(NamedTuple):
    """What the upstream said: a status and its headers, or why it said nothing."""

    status: int | None
    headers: httpx.Headers
    error: str | None = None

    @property
    def digest(self) -> str:
        return self.headers.get("Docker-Content-Digest", "")


def passed_headers(req: http.Request) -> dict[str, str]:
    """The client's headers a side request about its request takes along."""
    return {k: ", ".join(req.headers.get_all(k)) for k in PASSED_HEADERS if k in req.headers}


def verification() -> ssl.SSLContext | bool:
    opts = ctx.options
    if opts.ssl_insecure:
        return False
    if opts.ssl_verify_upstream_trusted_ca or opts.ssl_verify_upstream_trusted_confdir:
        return ssl.create_default_context(
            cafile=opts.ssl_verify_upstream_trusted_ca or None,
            capath=opts.ssl_verify_upstream_trusted_confdir or None,
        )
    return True


class SideRequests:
    def __init__(self) -> None:
        self._client: httpx.AsyncClient | None = None

    def client(self) -> httpx.AsyncClient:
        """The shared client, made at first use (when the options are final)."""
        if self._client is None:
            self._client = httpx.AsyncClient(
                verify=verification(),
                timeout=ctx.options.regmirror_upstream_timeout,
                limits=httpx.Limits(max_connections=MAX_CONNECTIONS),
            )
        return self._client

    async def head(self, url: str, headers: dict[str, str]) -> SideAnswer:
        """HEAD `url` with `headers`; never raises for what the network or upstream does."""
        try:
            r = await self.client().head(url, headers=headers)
        except (httpx.HTTPError, ValueError) as e:
            kind = "timed out" if isinstance(e, httpx.TimeoutException) else "failed"
            return SideAnswer(None, httpx.Headers(), f"HEAD {url} {kind}: {e or type(e).__name__}")
        return SideAnswer(r.status_code, r.headers)

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None
