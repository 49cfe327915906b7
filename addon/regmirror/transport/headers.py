"""Header values the mirror reads, parsed without trusting them, and requests it refuses to
forward as they came. Pure."""

from mitmproxy import http

HTTP_VERSIONS = (b"HTTP/1.0", b"HTTP/1.1", b"HTTP/2.0")
# RFC 9110 5.5: a proxy must not forward CR, LF or NUL inside a field value.
_FORBIDDEN_IN_VALUES = (b"\r", b"\n", b"\0")


def content_length(headers: http.Headers) -> int | None:
    """The Content-Length as a number; None when it is missing or not ASCII digits."""
    value = headers.get("Content-Length", "")
    return int(value) if value.isascii() and value.isdigit() else None


def request_problem(req: http.Request) -> tuple[int, str] | None:
    """(status, message) when a request cannot be forwarded as it is, else None:
    an HTTP version the mirror does not speak, a method not in capitals (methods are case
    sensitive, mitmproxy shows them upper-cased), forbidden bytes in a header value, or a
    body on GET or HEAD."""
    if req.data.http_version not in HTTP_VERSIONS:
        return 505, "HTTP version not supported"
    if req.data.method != req.data.method.upper():
        return 405, f"method {req.data.method[:20].decode('ascii', 'replace')!r} not served"
    if any(c in value for _, value in req.headers.fields for c in _FORBIDDEN_IN_VALUES):
        return 400, "malformed header value"
    length = content_length(req.headers)
    has_body = bool(length) or "Transfer-Encoding" in req.headers
    if req.method in ("GET", "HEAD") and has_body:
        return 400, f"{req.method} with a body"
    return None
