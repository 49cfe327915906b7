"""One log line per registry operation, in describe.py's words:
`pull manifest docker.io/library/nginx:1-alpine -> 200 1.2 kB 35 ms`, or the same as a
JSON object (`regmirror_log_format=json`). Never logs credentials; what a client sent is
escaped. By default mitmproxy's own per-flow and per-connection lines are off
(log_output.py)."""

import datetime
import json
import logging
import time
from typing import Any

from mitmproxy import ctx, exceptions, http

from ..record import KEY, outcome, route
from ..routing import names
from .describe import (
    ending,
    error_code,
    operation,
    printable,
    response_size,
    token_scopes,
    words,
)
from .log_output import LogOutput

logger = logging.getLogger(__name__)
FORMATS = ("text", "json")


def describe(flow: http.HTTPFlow, short: bool = False) -> str:
    """What the client asked for: `pull manifest docker.io/library/nginx:1 [path]`."""
    r = route(flow)
    scopes = token_scopes(flow.request) if r and r.get("op") == names.TOKEN else []
    return words(operation(flow.request.method, r, scopes, flow.request.path, short))


def fields(flow: http.HTTPFlow, ms: float, now: float) -> dict[str, Any]:
    """The JSON log record of an operation: the text line's facts, one key each."""
    r, result, resp = route(flow), outcome(flow), flow.response
    scopes = token_scopes(flow.request) if r and r.get("op") == names.TOKEN else []
    op = operation(flow.request.method, r, scopes, flow.request.path)
    record: dict[str, Any] = {
        "time": datetime.datetime.fromtimestamp(now, datetime.UTC).isoformat(
            timespec="milliseconds"
        ),
        "operation": " ".join(w for w in (op.verb, op.object) if w),
        "image": op.image,
        "detail": op.detail,
        "status": resp.status_code if resp else None,
        "bytes": response_size(resp) if resp and flow.request.method != "HEAD" else 0,
        "ms": round(ms),
        "client": "{}:{}".format(*flow.client_conn.peername[:2])
        if flow.client_conn.peername
        else "",
    }
    if r and ":" in (reference := r.get("reference", "")):
        record["digest"] = reference  # whole: `image` shortens a blob's
    for key in ("cache", "answered_by", "refused", "offline"):
        if value := result.get(key):
            record[key] = value
    if resp and (code := error_code(resp)):
        record["error"] = code
    if flow.error:
        record["error"] = flow.error.msg
    return {k: printable(v) if isinstance(v, str) else v for k, v in record.items()}


class OpLog:
    def __init__(self) -> None:
        self.output = LogOutput(logger)

    def load(self, loader) -> None:
        loader.add_option(
            "regmirror_log_flows",
            bool,
            False,
            """
            Also print mitmproxy's own lines: mitmdump's dump of every flow and the
            connection lines (client and server connect and disconnect). Off: one line per
            registry operation, plus warnings and errors.
            """,
        )
        loader.add_option(
            "regmirror_log_format",
            str,
            "text",
            """
            Format of the per-operation lines: "text", or "json" for one JSON object per
            line on standard output (time, operation, image, status, bytes, ms, cache,
            client, ...), for log shippers.
            """,
        )

    def configure(self, updated: set[str]) -> None:
        if {"regmirror_log_flows", "regmirror_log_format"} & updated:
            fmt = ctx.options.regmirror_log_format
            if fmt not in FORMATS:
                raise exceptions.OptionsError(
                    f"regmirror_log_format must be one of {', '.join(FORMATS)}, not {fmt!r}"
                )
            quiet = not ctx.options.regmirror_log_flows
            self.output.apply(quiet, fmt == "json")
            if quiet and getattr(ctx.options, "flow_detail", 0):  # mitmdump only
                ctx.options.update(flow_detail=0)

    def done(self) -> None:
        self.output.restore()

    def response(self, flow: http.HTTPFlow) -> None:
        resp = flow.response
        if KEY not in flow.metadata or not resp:
            return
        now = time.time()
        ms = ((resp.timestamp_end or now) - flow.request.timestamp_start) * 1000
        level = logging.WARNING if resp.status_code >= 500 else logging.INFO
        if ctx.options.regmirror_log_format == "json":
            return logger.log(level, json.dumps(fields(flow, ms, now)))
        logger.log(level, f"{describe(flow)} {ending(flow, outcome(flow))} {ms:.0f} ms")

    def error(self, flow: http.HTTPFlow) -> None:
        if KEY not in flow.metadata or not flow.error:
            return
        if ctx.options.regmirror_log_format == "json":
            now = time.time()
            ms = (now - flow.request.timestamp_start) * 1000
            return logger.warning(json.dumps(fields(flow, ms, now)))
        logger.warning(printable(f"{describe(flow)} -> failed: {flow.error.msg}"))
