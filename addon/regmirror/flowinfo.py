"""What the mirror knows about a flow, kept in `flow.metadata` as plain values so flows
can still be saved and shown by mitmweb."""

from typing import TypedDict

from mitmproxy import http

from .routes import Upstream, parse_upstream

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
    upstream: str  # the upstream registry's base URL
    dockerhub: bool
    target: str  # host of a token realm or a followed redirect
    error: str  # why the mirror replaces the upstream's answer with a 502


def info(flow: http.HTTPFlow) -> FlowInfo | None:
    return flow.metadata.get(KEY)


def upstream_of(i: FlowInfo) -> Upstream:
    return parse_upstream(i["upstream"])._replace(dockerhub=i.get("dockerhub", False))
