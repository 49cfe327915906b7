"""What the mirror knows about a flow, kept in `flow.metadata` as plain values so flows
can still be saved and shown by mitmweb."""

from typing import TypedDict

from mitmproxy import http

KEY = "regmirror"

# Operations of the mirror itself, beside the registry API's (names.PING ...).
ROOT = "root"
REDIRECT = "redirect"
REJECTED = "rejected"


class FlowInfo(TypedDict, total=False):
    op: str  # names.PING, MANIFEST, ... or REDIRECT, ROOT, REJECTED
    name: str  # repository name as the upstream knows it (`library/nginx`)
    reference: str  # tag or digest
    mirror: str  # the mirror's base URL as the client used it
    registry: str  # the registry's key (`docker.io`, `ghcr.io`)
    upstream: str  # the upstream registry's base URL
    style: str  # how the client addressed the registry: resolve.HOST, PATH or NS
    prefix: str  # the path prefix the client used (PATH style)
    target: str  # host of a token realm or a followed redirect
    error: str  # why the mirror replaces the upstream's answer with a 502
    client: str  # the user the mirror authenticated (client auth)
    cached: str  # what the mirror answered from its own cache: "challenge" or "token"
    fault: str  # the hook that raised (`Router.requestheaders`); the mirror answered 500


def info(flow: http.HTTPFlow) -> FlowInfo | None:
    return flow.metadata.get(KEY)


def answered_op(flow: object, message: object) -> str:
    """The operation of a flow when `message` is its successful response, else "": what
    content views of answers (tokens, listings) decide by."""
    if not isinstance(flow, http.HTTPFlow) or not flow.response or message is not flow.response:
        return ""
    i = info(flow)
    return i.get("op", "") if i and flow.response.status_code < 300 else ""
