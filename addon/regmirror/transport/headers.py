"""Header values the mirror reads, parsed without trusting them."""

from mitmproxy import http


def content_length(headers: http.Headers) -> int | None:
    """The Content-Length as a number; None when it is missing or not ASCII digits."""
    value = headers.get("Content-Length", "")
    return int(value) if value.isascii() and value.isdigit() else None
