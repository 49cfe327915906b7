"""A HEAD that the cache answers from a committed file (a hit: after client auth, allow/deny
and the cache's rules, decided by the cache as for a GET) is answered in its own
requestheaders hook: the answer is headers only, all of them known from the index. Through
the cache's file server it cost a second HTTP exchange on loopback per HEAD (mitmproxy's
connection to the file server, aiohttp's handling, the parsing of its answer): about a third
of the mirror's CPU for a manifest HEAD by digest (BENCHMARKS.md, profile).

Conditional and range requests still go to the file server, which answers them (304, 206,
412) as distribution does.
"""

from mitmproxy import http

from ..answers import answer
from .addon import Cache
from .files import content_headers
from .index import Link

CONDITIONAL = ("range", "if-range", "if-none-match", "if-modified-since")


def head_response(link: Link) -> http.Response:
    """What the file server answers to a plain HEAD of `link`'s file."""
    resp = http.Response.make(200, b"", content_headers(link.digest, link.media_type))
    resp.headers["Content-Length"] = str(link.size)
    return resp


class CachedHeads:
    def __init__(self, cache: Cache) -> None:
        self.cache = cache

    def requestheaders(self, flow: http.HTTPFlow) -> None:
        link = self.cache.hits.get(flow)  # the cache serves this from a committed file
        if flow.response or flow.error or not link or flow.request.method != "HEAD":
            return
        if any(name in flow.request.headers for name in CONDITIONAL):
            return
        answer(flow, head_response(link), None)  # the cache's hit, counted as one
