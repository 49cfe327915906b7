"""One record per flow: what the client asked for (the route) and how it ended (the
outcome), in `flow.metadata["regmirror"]` as plain values, so saved flows still load and
mitmweb shows them.

The route is written once, by the router, when the request headers arrive. A followed
redirect gets the route of the request the upstream redirected, restored from its signed
URL. Route fields (everyone reads them):
- mirror: the mirror's base URL as the client used it (for the URLs handed out);
- op: what the client asked for: ping, token, catalog, manifest, blob, tags, referrers,
  upload or root;
- registry, upstream: the registry's key (`docker.io`) and its base URL;
- style, prefix: how the client addressed the registry: host, path (with this prefix), ns;
- name, reference: the repository as the upstream knows it, and the tag or digest;
- via, target: "redirect" and its URL, for content fetched where the upstream redirected it;
- provenance: of a followed redirect, how the request it came from was authorized.

Outcome fields, each with one writer:
- answered_by (answers.answer): who answered instead of the upstream: router, client
  auth, token proxy, challenge cache, token cache, limits, outbound, guard;
- refused (answers.refuse): why the mirror refused; answered_by says who;
- client (auth.client_auth): the user the mirror authenticated;
- realm (auth.token_proxy): the host a token request went to;
- bad_upstream (answers.bad_upstream): why the upstream's answer became a 502;
- timeout (transport.upstream): why the mirror gave up waiting for the upstream's answer;
- fault (guard): the hook that raised; the flow was answered 500;
- offline (auth.token_proxy): why the mirror answers for an upstream it cannot reach (a
  ping, a token it signs itself), or that the client holds such a token;
- provenance (cache): how the request is authorized upstream: anonymous, route or client;
- cache (cache): hit, miss, stale, or "fill failed: REASON".
"""

from typing import TypedDict

from mitmproxy import http

KEY = "regmirror"

# Operations of the mirror itself, beside the registry API's (routing.names.PING ...).
ROOT = "root"
REDIRECT = "redirect"  # Route.via of a followed redirect


class Route(TypedDict, total=False):
    mirror: str
    op: str
    registry: str
    upstream: str
    style: str
    prefix: str
    name: str
    reference: str
    via: str
    target: str
    provenance: str


class Outcome(TypedDict, total=False):
    answered_by: str
    refused: str
    client: str
    realm: str
    bad_upstream: str
    timeout: str
    fault: str
    offline: str
    provenance: str
    cache: str


class Record(TypedDict, total=False):
    route: Route
    outcome: Outcome


def _record(flow: http.HTTPFlow) -> Record:
    return flow.metadata.setdefault(KEY, Record())


def route(flow: http.HTTPFlow) -> Route | None:
    """The flow's route; None for flows the mirror did not route (other modes, bad hosts)."""
    record = flow.metadata.get(KEY)
    return record.get("route") if record else None


def set_route(flow: http.HTTPFlow, value: Route) -> Route:
    """Write the route, once (the router's)."""
    record = _record(flow)
    if "route" in record:
        raise RuntimeError("the route of a flow is written once")
    record["route"] = value
    return value


def outcome(flow: http.HTTPFlow) -> Outcome:
    return _record(flow).setdefault("outcome", Outcome())


def answered_op(flow: object, message: object) -> str:
    """The operation of a flow when `message` is its successful response from upstream, else
    "": what content views of answers (tokens, listings) decide by."""
    if not isinstance(flow, http.HTTPFlow) or not flow.response or message is not flow.response:
        return ""
    r = route(flow)
    return r.get("op", "") if r and flow.response.status_code < 300 else ""
