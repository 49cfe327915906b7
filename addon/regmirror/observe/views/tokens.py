"""Token responses of a registry's token service, with their JWT decoded: header and claims,
never the signature or the token itself.

https://distribution.github.io/distribution/spec/auth/token/
https://distribution.github.io/distribution/spec/auth/jwt/
"""

import base64
import binascii
import json
import time
from typing import Any

from mitmproxy import contentviews, http

from ...record import answered_op
from ...routing import names
from ..redact import REDACTED, fingerprint
from .render import Line, blank, heading, local_time, pairs, parse_json_object, table, value

TIME_CLAIMS = ("iat", "nbf", "exp")


def decode_jwt(token: str) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """(header, claims) of a JWT, unverified; None if the token is not a JWT.
    The signature is never decoded."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    try:
        header, claims = (
            json.loads(base64.urlsafe_b64decode(p + "=" * (-len(p) % 4))) for p in parts[:2]
        )
    except (ValueError, binascii.Error):
        return None
    if not isinstance(header, dict) or not isinstance(claims, dict):
        return None
    return header, claims


def _header_items(header: dict[str, Any]) -> list[tuple[str, str]]:
    items = []
    for k, v in header.items():
        if k == "x5c" and isinstance(v, list):
            items.append((k, f"{len(v)} certificate(s), not shown"))
        else:
            items.append((k, value(v)))
    return items


def _claim_items(claims: dict[str, Any], now: float) -> list[tuple[str, str]]:
    items = []
    for k, v in claims.items():
        if k == "access":
            continue
        if k in TIME_CLAIMS and isinstance(v, int | float):
            items.append((k, local_time(v, now if k == "exp" else None)))
        else:
            items.append((k, value(v)))
    return items


def _access(claims: dict[str, Any]) -> list[Line]:
    access = claims.get("access")
    if not isinstance(access, list):
        return []
    rows = [
        [str(a.get("type", "")), str(a.get("name", "")), ",".join(a.get("actions") or [])]
        for a in access
        if isinstance(a, dict)
    ]
    if not rows:
        return [blank(), heading("Access: none granted")]
    return [blank(), heading("Access"), *table(["type", "name", "actions"], rows)]


def render_token(token: str, now: float) -> list[Line]:
    """A bearer token: fingerprint, and for a JWT its header, claims and access list."""
    lines = pairs([("fingerprint", fingerprint(token))])
    decoded = decode_jwt(token)
    if decoded is None:
        return [*lines, [("text", f"opaque token of {len(token)} characters, not shown")]]
    header, claims = decoded
    return [
        *lines,
        blank(),
        heading("JWT header"),
        *pairs(_header_items(header), 2),
        blank(),
        heading("JWT claims"),
        *pairs(_claim_items(claims, now), 2),
        *_access(claims),
    ]


def render(doc: dict[str, Any], now: float) -> tuple[str, list[Line]]:
    """A token service's answer: `{"token", "access_token", "expires_in", "issued_at", ...}`."""
    token = doc.get("token") or doc.get("access_token") or ""
    items = []
    for k, v in doc.items():
        if k in ("token", "access_token"):
            continue
        if k == "refresh_token":
            items.append((k, REDACTED))
        elif k == "expires_in" and isinstance(v, int | float):
            items.append((k, f"{v} s"))
        else:
            items.append((k, value(v)))
    if doc.get("token") and doc.get("access_token") and doc["token"] != doc["access_token"]:
        items.append(("access_token", f"differs from token: {fingerprint(doc['access_token'])}"))
    lines = [*pairs(items), blank(), heading("Bearer token"), *render_token(str(token), now)]
    expiry = ""
    decoded = decode_jwt(str(token))
    if decoded and isinstance(decoded[1].get("exp"), int | float):
        expiry = ", expires " + local_time(decoded[1]["exp"], now)
    return f"Registry token {fingerprint(str(token))}{expiry}", lines


class TokenView(contentviews.View):
    name = "Registry token"

    def __call__(self, data: bytes, **metadata: Any) -> contentviews.TViewResult | None:
        doc = parse_json_object(data)
        if doc is None or not (doc.get("token") or doc.get("access_token")):
            return None
        description, lines = render(doc, time.time())
        return description, iter(lines)

    def render_priority(
        self,
        data: bytes,
        *,
        flow: http.HTTPFlow | None = None,
        http_message: http.Message | None = None,
        **metadata: Any,
    ) -> float:
        return 2 if data and answered_op(flow, http_message) == names.TOKEN else 0
