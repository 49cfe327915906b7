"""Flows as a reverse-mode mirror sees them, for the unit tests of the hooks."""

from mitmproxy import http
from mitmproxy.proxy.mode_specs import ProxyMode
from mitmproxy.test import tflow, tutils


def reverse_flow(
    method: str = "GET",
    path: str = "/v2/",
    host: str = "mirror.test:5000",
    upstream: str = "https://registry-1.docker.io",
    headers: dict[str, str] | None = None,
    content: bytes = b"",
) -> http.HTTPFlow:
    """A flow received by `--mode reverse:UPSTREAM` with `Host: host`, before any hook ran."""
    mode = ProxyMode.parse(f"reverse:{upstream}")
    framing = {"content_length": str(len(content))} if content else {}
    target_host, target_port = mode.address
    req = tutils.treq(
        method=method.encode(),
        scheme=mode.scheme.encode(),
        host=target_host,
        port=target_port,
        authority=b"",
        path=path.encode(),
        headers=http.Headers(host=host, **framing, **(headers or {})),
        content=content,
    )
    f = tflow.tflow(req=req)
    f.client_conn.proxy_mode = mode
    f.client_conn.timestamp_tls_setup = None  # plain HTTP client
    return f


def respond(
    f: http.HTTPFlow, status: int, headers: dict[str, str] | None = None, body: bytes = b""
) -> http.HTTPFlow:
    f.response = http.Response.make(status, body, headers or {})
    return f
