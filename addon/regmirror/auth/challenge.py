"""`Www-Authenticate` challenges (RFC 7235), parsed by parameter name, never by position."""

import re
from typing import NamedTuple

_TOKEN = r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
# Challenges are separated by commas, so a scheme without parameters ends at one:
# `Negotiate, Bearer realm="..."`.
_SCHEME_RE = re.compile(rf"[\s,]*({_TOKEN})(?:\s+|$|(?=,))")
_PARAM_RE = re.compile(rf'\s*({_TOKEN})\s*=\s*(?:"((?:[^"\\]|\\.)*)"|({_TOKEN}))\s*(?:,|$)')
_UNESCAPE_RE = re.compile(r"\\(.)")


class Challenge(NamedTuple):
    scheme: str
    params: dict[str, str]

    @property
    def is_bearer(self) -> bool:
        return self.scheme.lower() == "bearer"


def parse_challenges(header: str) -> list[Challenge]:
    """Parse a `Www-Authenticate` value into its challenges. Raises ValueError if malformed.

    Parameter names are lower-cased; values are unquoted, so `scope="repository:a:pull,push"`
    keeps its comma.
    """
    challenges: list[Challenge] = []
    pos = 0
    header = header.strip()
    while pos < len(header):
        m = _SCHEME_RE.match(header, pos)
        if not m:
            raise ValueError(f"malformed challenge at {header[pos : pos + 40]!r}")
        current = Challenge(m[1], {})
        challenges.append(current)
        pos = m.end()
        while pos < len(header):
            p = _PARAM_RE.match(header, pos)
            if not p:
                break  # the next challenge's scheme starts here
            value = _UNESCAPE_RE.sub(r"\1", p[2]) if p[2] is not None else p[3]
            current.params[p[1].lower()] = value
            pos = p.end()
    if not challenges:
        raise ValueError("empty challenge")
    return challenges


def bearer_challenge(header: str) -> Challenge:
    """The Bearer challenge with a realm in the header. Raises ValueError otherwise."""
    for c in parse_challenges(header):
        if c.is_bearer and c.params.get("realm"):
            return c
    raise ValueError(f"no Bearer challenge with a realm in {header[:200]!r}")


def format_challenge(c: Challenge) -> str:
    def quote(v: str) -> str:
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'

    return c.scheme + " " + ",".join(f"{k}={quote(v)}" for k, v in c.params.items())


def with_realm(c: Challenge, realm: str) -> Challenge:
    """The same challenge (service, scope, error ...) with another realm."""
    return Challenge(c.scheme, {**c.params, "realm": realm})
