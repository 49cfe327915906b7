"""The cache's files, served over HTTP on loopback: mitmproxy cannot send a response body
from a file without reading it into memory, so a cache hit is routed to this small server,
and mitmproxy streams its answer to the client like any upstream's. aiohttp's FileResponse
sends the file with sendfile and answers Range (206), HEAD and conditional requests.

Only 127.0.0.1, on a port of the kernel's choice, under a random path prefix per process,
so no other local user can read the cache through it. `CachedFile` and `content_headers`
are also what the public data plane (data_plane.py) answers with.
"""

import contextlib
import secrets
import urllib.parse

from aiohttp import web

from .content import Content
from .errors import FillFailed
from .store import Store, cacheable


class FileServer:
    def __init__(self, store: Store, content: Content) -> None:
        self.store, self.content = store, content
        self.prefix = "/" + secrets.token_urlsafe(16)
        self.port = 0
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get(self.prefix + "/{digest}", self._serve)  # HEAD included
        app.router.add_get(self.prefix + "/follow/{digest}", self._follow)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def stop(self) -> None:
        if self._runner:
            await self._runner.cleanup()

    def url(self, digest: str, media_type: str) -> str:
        kind = urllib.parse.quote(media_type, safe="")  # `+json`: a `+` would read as a space
        return f"http://127.0.0.1:{self.port}{self.prefix}/{digest}?type={kind}"

    def follow_url(self, digest: str, media_type: str) -> str:
        return self.url(digest, media_type).replace(f"{self.prefix}/", f"{self.prefix}/follow/")

    async def _follow(self, request: web.Request) -> web.StreamResponse:
        """A blob still being filled, sent as it grows (single flight: one upstream fetch
        for every client that asks meanwhile). Its last byte comes once the digest matched;
        when the fill fails, the connection is cut, so no client takes the body for whole."""
        digest = request.match_info["digest"]
        fill = self.store.filling(digest) if cacheable(digest) else None
        if fill is None or fill.expected_size is None:
            return await self._serve(request)  # it ended meanwhile: the file, if it is kept
        response = web.StreamResponse(headers=content_headers(digest, _media_type(request)))
        response.content_length = fill.expected_size
        await response.prepare(request)
        if request.method == "HEAD":
            return response
        try:
            async with contextlib.aclosing(self.store.follow(fill)) as chunks:
                async for chunk in chunks:
                    await response.write(chunk)
        except FillFailed:
            if request.transport:
                request.transport.abort()
            return response
        await response.write_eof()
        return response

    async def _serve(self, request: web.Request) -> web.StreamResponse:
        digest = request.match_info["digest"]
        if not cacheable(digest):
            raise web.HTTPNotFound()
        return await self.content.respond(
            request, digest, content_headers(digest, _media_type(request))
        )


def _media_type(request: web.Request) -> str:
    return request.query.get("type") or "application/octet-stream"


def content_headers(digest: str, media_type: str) -> dict[str, str]:
    """What an answer with the content of `digest` says of it, as distribution does."""
    return {
        "Content-Type": media_type,
        "Docker-Content-Digest": digest,
        "ETag": f'"{digest}"',  # as distribution: the entity tag of content is its digest
        "Docker-Distribution-Api-Version": "registry/2.0",
    }
