"""One readable log line per registry operation, in describe.py's words:
`pull manifest docker.io/library/nginx:1-alpine -> 200 1.2 kB 35 ms`. Never logs
credentials; what a client sent is escaped."""

import logging
import time

from mitmproxy import http

from ..record import KEY, outcome, route
from ..routing import names
from .describe import ending, operation, printable, token_scopes, words

logger = logging.getLogger(__name__)


def describe(flow: http.HTTPFlow, short: bool = False) -> str:
    """What the client asked for: `pull manifest docker.io/library/nginx:1 [path]`."""
    r = route(flow)
    scopes = token_scopes(flow.request) if r and r.get("op") == names.TOKEN else []
    return words(operation(flow.request.method, r, scopes, flow.request.path, short))


class OpLog:
    def response(self, flow: http.HTTPFlow) -> None:
        resp = flow.response
        if KEY not in flow.metadata or not resp:
            return
        ms = ((resp.timestamp_end or time.time()) - flow.request.timestamp_start) * 1000
        end = ending(flow, outcome(flow))
        level = logging.WARNING if resp.status_code >= 500 else logging.INFO
        logger.log(level, f"{describe(flow)} {end} {ms:.0f} ms")

    def error(self, flow: http.HTTPFlow) -> None:
        if KEY not in flow.metadata or not flow.error:
            return
        logger.warning(printable(f"{describe(flow)} -> failed: {flow.error.msg}"))
