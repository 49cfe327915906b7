"""Refusals made readable: `Www-Authenticate` challenges and registry error bodies.

https://distribution.github.io/distribution/spec/api/#errors
"""

from typing import Any

from mitmproxy import contentviews, http
from mitmproxy.net.http import status_codes

from ...auth.challenge import parse_challenges
from .render import Line, blank, heading, pairs, parse_json_object, value


def render_challenges(headers: list[str]) -> list[Line]:
    """Each challenge of each `Www-Authenticate` header, its parameters one per line."""
    lines: list[Line] = []
    for header in headers:
        try:
            challenges = parse_challenges(header)
        except ValueError as e:
            lines += [heading("Www-Authenticate (malformed)"), [("text", f"  {header}: {e}")]]
            continue
        for c in challenges:
            lines += [heading(f"Www-Authenticate: {c.scheme}"), *pairs(c.params.items(), 2)]
    return lines


def render_errors(doc: dict[str, Any]) -> list[Line]:
    """`{"errors": [{"code", "message", "detail"}]}`, or a token service's `{"details"}`."""
    lines: list[Line] = []
    for err in doc.get("errors") or []:
        if not isinstance(err, dict):
            continue
        lines.append(
            [("header", str(err.get("code", "?"))), ("text", f"  {err.get('message', '')}")]
        )
        if err.get("detail") is not None:
            lines.append([("text", f"  detail: {value(err['detail'])}")])
    for key in ("details", "error", "error_description"):
        if isinstance(doc.get(key), str):
            lines.append([("header", key), ("text", f"  {doc[key]}")])
    return lines


def error_codes(doc: dict[str, Any]) -> list[str]:
    return [str(e["code"]) for e in doc.get("errors") or [] if isinstance(e, dict) and "code" in e]


def render(status: int, reason: str, challenges: list[str], body: bytes) -> tuple[str, list[Line]]:
    """A refusal: status, the challenges of its `Www-Authenticate` headers, its errors."""
    doc = parse_json_object(body) if body else None
    errors = render_errors(doc) if doc else []
    lines = [heading(f"{status} {reason or status_codes.RESPONSES.get(status, '')}")]
    if challenges:
        lines += [blank(), *render_challenges(challenges)]
    if errors:
        lines += [blank(), heading("Errors"), *errors]
    elif body:
        lines += [blank(), heading("Body"), [("text", body.decode("utf-8", "replace")[:2000])]]
    return " ".join(["Registry error", str(status), *error_codes(doc or {})]), lines


class ErrorView(contentviews.View):
    name = "Registry error"

    def __call__(
        self, data: bytes, *, http_message: http.Message | None = None, **metadata: Any
    ) -> contentviews.TViewResult | None:
        if not isinstance(http_message, http.Response):
            return None
        description, lines = render(
            http_message.status_code,
            http_message.reason,
            http_message.headers.get_all("WWW-Authenticate"),
            data,
        )
        return description, iter(lines)

    def render_priority(
        self, data: bytes, *, http_message: http.Message | None = None, **metadata: Any
    ) -> float:
        if not isinstance(http_message, http.Response) or http_message.status_code < 400:
            return 0
        if "WWW-Authenticate" in http_message.headers:
            return 2
        doc = parse_json_object(data) if data and len(data) <= 65536 else None
        return 2 if doc and ("errors" in doc or "details" in doc) else 0
