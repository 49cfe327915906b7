"""The token request the mirror sends to an upstream's realm, built from the client's: pure.

Clients ask the mirror's `/v2/auth` with GET (`?service=...&scope=...`) or with the OAuth2
POST form (`grant_type=password&scope=...`). Upstream, the realm's own query and the
upstream's `service` are used, and only pull scopes on repositories the route allows
(scopes.read_only_scopes). Never asked for: refresh tokens (`offline_token`, the OAuth2
`access_type=offline`), which would outlive every check the mirror makes.
"""

import urllib.parse
from collections.abc import Callable

from .scopes import InvalidScope, read_only_scopes

MAX_FIELDS = 100  # parameters of one token request; real ones have under ten
# Parameters that ask the token service for a refresh token.
REFRESH_PARAMS = ("offline_token", "access_type")


class InvalidTokenRequest(ValueError):
    """A token request whose query or form is not valid UTF-8, or has a malformed scope."""


class Scopes:
    """How a client's scopes become the upstream's: renamed, checked against the route."""

    def __init__(
        self, rename: Callable[[str], str], allows: Callable[[str], bool], catalog: bool
    ) -> None:
        self.rename, self.allows, self.catalog = rename, allows, catalog

    def __call__(self, values: list[str]) -> list[str]:
        try:
            return read_only_scopes(values, self.rename, self.allows, self.catalog)
        except InvalidScope as e:
            raise InvalidTokenRequest(str(e)) from e


def checked_params(pairs: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """Query parameters as mitmproxy decodes them (undecodable bytes become surrogates).
    Raises InvalidTokenRequest unless every name and value is text."""
    if len(pairs) > MAX_FIELDS:
        raise InvalidTokenRequest("too many parameters")
    for k, v in pairs:
        try:
            k.encode(), v.encode()
        except UnicodeEncodeError:
            raise InvalidTokenRequest(f"parameter {k[:50]!r} is not UTF-8") from None
    return pairs


def parse_form(body: bytes) -> list[tuple[str, str]]:
    """An `application/x-www-form-urlencoded` body: ASCII, with UTF-8 %-escapes. Raises
    InvalidTokenRequest."""
    try:
        return urllib.parse.parse_qsl(
            body.decode("ascii"),
            keep_blank_values=True,
            strict_parsing=bool(body),
            errors="strict",
            max_num_fields=MAX_FIELDS,
        )
    except (UnicodeDecodeError, ValueError) as e:
        raise InvalidTokenRequest(f"malformed form: {e}") from None


def requested_scopes(pairs: list[tuple[str, str]]) -> list[str]:
    return [v for k, v in pairs if k == "scope" and v.strip()]


def token_url(
    realm: str, service: str, params: list[tuple[str, str]], scopes: Scopes
) -> tuple[str, list[str]]:
    """(upstream token URL, its scopes) for a client's GET token request.

    Keeps the realm's own query and the client's other parameters (`account`, `client_id`
    ...), sets the upstream's `service`. The realm is one the mirror learned (a URL).
    """
    u = urllib.parse.urlsplit(realm)
    query = [
        (k, v) for k, v in urllib.parse.parse_qsl(u.query, keep_blank_values=True) if k != "service"
    ]
    if service:
        query.append(("service", service))
    wanted = scopes(requested_scopes(checked_params(params)))
    query += [(k, v) for k, v in params if k not in ("scope", "service", *REFRESH_PARAMS)]
    query += [("scope", s) for s in wanted]
    # the realm and the service come from the upstream's challenge, bytes and all
    query_text = urllib.parse.urlencode(query, errors="surrogateescape")
    return urllib.parse.urlunsplit(u._replace(query=query_text)), wanted


def token_form(form: list[tuple[str, str]], service: str, scopes: Scopes) -> tuple[str, list[str]]:
    """(upstream form, its scopes) for a client's OAuth2 POST (`grant_type=password` ...)."""
    wanted = scopes(requested_scopes(checked_params(form)))
    out = [(k, service or v) if k == "service" else (k, v) for k, v in form]
    out = [(k, v) for k, v in out if k not in ("scope", *REFRESH_PARAMS)]
    if wanted:
        out.append(("scope", " ".join(wanted)))
    return urllib.parse.urlencode(out, errors="surrogateescape"), wanted
