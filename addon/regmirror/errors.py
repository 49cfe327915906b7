"""Answers the mirror produces itself, in the registry's error format.

https://distribution.github.io/distribution/spec/api/#errors
"""

import json
from typing import Any

from mitmproxy import http

# Registry error codes used by the mirror itself.
NAME_INVALID = "NAME_INVALID"
NAME_UNKNOWN = "NAME_UNKNOWN"
BLOB_UNKNOWN = "BLOB_UNKNOWN"
TAG_INVALID = "TAG_INVALID"
DIGEST_INVALID = "DIGEST_INVALID"
DENIED = "DENIED"
UNAUTHORIZED = "UNAUTHORIZED"
UNSUPPORTED = "UNSUPPORTED"
UNAVAILABLE = "UNAVAILABLE"
TOOMANYREQUESTS = "TOOMANYREQUESTS"
UNKNOWN = "UNKNOWN"


def error_body(code: str, message: str, detail: Any = None) -> bytes:
    err: dict[str, Any] = {"code": code, "message": message}
    if detail is not None:
        err["detail"] = detail
    return json.dumps({"errors": [err]}, separators=(",", ":")).encode()


def error_response(
    status: int, code: str, message: str, detail: Any = None, head: bool = False
) -> http.Response:
    """A registry error answer. For HEAD the body is dropped but Content-Length kept."""
    body = error_body(code, message, detail)
    resp = http.Response.make(
        status,
        b"" if head else body,
        {
            "Content-Type": "application/json; charset=utf-8",
            "Docker-Distribution-Api-Version": "registry/2.0",
        },
    )
    if head:
        resp.headers["Content-Length"] = str(len(body))
    return resp
