"""Stream blob bodies straight through: never held in memory, no per-chunk work."""

from mitmproxy import http

from . import names
from .flowinfo import REDIRECT, info

STREAMED_OPS = (names.BLOB, REDIRECT)


class Streaming:
    def responseheaders(self, flow: http.HTTPFlow) -> None:
        i = info(flow)
        resp = flow.response
        if (
            not resp
            or not i
            or i.get("op") not in STREAMED_OPS
            or not 200 <= resp.status_code < 300
        ):
            return
        # Any other large body is streamed by stream_large_bodies (see upstream.py).
        resp.stream = True
