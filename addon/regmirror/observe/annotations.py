"""A short comment on every flow, shown in mitmweb's list, in the words of the log line:
which registry operation it was, for which image, and how it ended
(`check manifest docker.io/library/nginx:1 -> 200`,
`pull blob docker.io/library/nginx@sha256:ab12cd34ef56… -> 200 27.1 MB`). Refusals are
marked :no_entry:, failures :warning:.

Select one image's flows with `~comment library/nginx`: a blob fetched where the upstream
redirected it names its image too, `via` the host it came from.
"""

from mitmproxy import ctx, http

from ..record import KEY, outcome, route
from ..routing import names
from .describe import challenged, ending, printable
from .oplog import describe

DENIED = ":no_entry:"  # the mirror, an upstream or a token service refused the request
FAILED = ":warning:"  # not found, rate-limited, upstream errors, broken connections
MAX_DETAIL = 80


def mark(status: int, refused: bool, challenge: bool) -> str:
    """The mark of an answered flow: refusals :no_entry:, failures :warning:, else none."""
    if status < 400 or challenge:
        return ""
    return DENIED if refused or status in (401, 403) else FAILED


class Annotations:
    def running(self) -> None:
        # mitmweb lists comments only in a column it hides by default.
        if "web_columns" in ctx.options and not ctx.options.has_changed("web_columns"):
            ctx.options.update(web_columns=[*ctx.options.web_columns, "comment"])

    def requestheaders(self, flow: http.HTTPFlow) -> None:
        if KEY in flow.metadata:
            flow.comment = describe(flow, short=True)

    def request(self, flow: http.HTTPFlow) -> None:
        r = route(flow)
        if r and r.get("op") == names.TOKEN and flow.request.method == "POST":
            flow.comment = describe(flow, short=True)  # the OAuth2 form is read only now

    def response(self, flow: http.HTTPFlow) -> None:
        resp = flow.response
        if KEY not in flow.metadata or not resp:
            return
        result = outcome(flow)
        flow.comment = describe(flow, short=True) + " " + ending(flow, result)
        if m := mark(resp.status_code, "refused" in result, challenged(flow)):
            flow.marked = m

    def error(self, flow: http.HTTPFlow) -> None:
        if KEY not in flow.metadata or not flow.error:
            return
        flow.comment = describe(flow, short=True) + printable(
            f" -> failed: {flow.error.msg[:MAX_DETAIL]}"
        )
        flow.marked = FAILED
