"""Credentials out of sight: `Authorization` headers and token-request passwords are masked
in mitmdump's output, mitmweb and saved flows once the request has gone upstream.

What goes over the wire is never changed: masking happens in the `response` and `error`
hooks, when the request has been sent. Token bodies are not touched (the client still needs
them); the token view shows them decoded, without the token itself.
"""

import hashlib
import urllib.parse

from mitmproxy import ctx, exceptions, http

SECRET_HEADERS = ("Authorization", "Proxy-Authorization")
SECRET_FORM_FIELDS = frozenset({"password", "refresh_token", "client_secret"})
REDACTED = "<redacted>"


def fingerprint(token: str) -> str:
    """A short, stable name for a high-entropy token, to tell tokens apart without them."""
    return "sha256:" + hashlib.sha256(token.encode("utf-8", "surrogateescape")).hexdigest()[:12]


def mask_authorization(value: str) -> str:
    """`Bearer <redacted sha256:1a2b...>` for tokens; Basic and other schemes keep only
    their name (a fingerprint of a password could be guessed)."""
    scheme, _, credentials = value.strip().partition(" ")
    if credentials.startswith("<redacted"):
        return value  # a replayed flow: masked already
    if scheme.lower() == "bearer" and credentials:
        return f"{scheme} <redacted {fingerprint(credentials.strip())}>"
    return f"{scheme} {REDACTED}" if credentials else REDACTED


def mask_form(form: str) -> str:
    """An OAuth2 token form (`grant_type=password&password=...`) with its secrets masked."""
    fields = urllib.parse.parse_qsl(form, keep_blank_values=True, errors="surrogateescape")
    return urllib.parse.urlencode(
        [(k, REDACTED if k in SECRET_FORM_FIELDS else v) for k, v in fields],
        errors="surrogateescape",
    )


def mask_request(req: http.Request) -> None:
    for name in SECRET_HEADERS:
        if name in req.headers:
            req.headers[name] = mask_authorization(req.headers[name])
    if req.method == "POST" and "urlencoded" in req.headers.get("Content-Type", ""):
        req.text = mask_form(req.get_text(strict=False) or "")


class Redaction:
    def load(self, loader) -> None:
        loader.add_option(
            "regmirror_show_secrets",
            bool,
            False,
            """
            Show credentials as they are, for local debugging only. Off (the default): once a
            request has been answered, its Authorization header becomes
            "Bearer <redacted sha256:...>" (the fingerprint the token view shows for the same
            token) or "Basic <redacted>", and token-request passwords become "<redacted>", in
            mitmdump's output, mitmweb and saved flows; mitmdump shows bodies only through the
            content views, which never print a token. Requests sent upstream are not changed.
            """,
        )

    def configure(self, updated: set[str]) -> None:
        if not {"regmirror_show_secrets", "dumper_default_contentview"} & updated:
            return
        if ctx.options.regmirror_show_secrets or "dumper_default_contentview" not in ctx.options:
            return  # mitmweb and the console have no dumper
        view = ctx.options.dumper_default_contentview
        if view != "auto":
            raise exceptions.OptionsError(
                f"dumper_default_contentview={view} would print tokens in bodies: "
                "keep it at auto, or set regmirror_show_secrets=true"
            )

    def response(self, flow: http.HTTPFlow) -> None:
        if ctx.options.regmirror_show_secrets:
            return
        mask_request(flow.request)

    error = response  # a failed request has been sent as far as it will go
