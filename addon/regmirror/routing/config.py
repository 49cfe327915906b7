"""The mirror's configuration file (TOML), parsed into a route table. Pure: no mitmproxy.

See `regmirror.example.toml` at the top of the repository for every key.
"""

import os
import re
import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ..transport import targets
from .catalog import CATALOG, Registry
from .upstreams import parse_upstream, valid_host

_SUBDOMAIN_RE = re.compile(r"[a-z0-9]([a-z0-9-]*[a-z0-9])?")
_GLOB_RE = re.compile(r"[a-z0-9._/*?\[\]-]+")


class ConfigError(ValueError):
    """A problem in the configuration; the message names the key."""


@dataclass(frozen=True)
class ClientAuth:
    """Who may use the mirror. Both empty: anyone."""

    htpasswd: dict[str, bytes] = field(default_factory=dict, repr=False)  # user -> bcrypt hash
    tokens: frozenset[str] = field(default_factory=frozenset, repr=False)

    @property
    def enabled(self) -> bool:
        return bool(self.htpasswd or self.tokens)


@dataclass(frozen=True)
class Config:
    registries: dict[str, Registry] = field(default_factory=lambda: dict(CATALOG))
    hosts: dict[str, str] = field(default_factory=dict)  # client host -> registry key
    domain: str = ""  # subdomain routing: ghcr.<domain> -> ghcr.io
    default: str = ""  # registry key for requests nothing else routes; "" = --mode target
    auth: ClientAuth = field(default_factory=ClientAuth)


def load_config(path: str) -> Config:
    text = _read(Path(path))
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: {e}") from e
    return parse_config(data, base=Path(path).parent)


def parse_config(data: dict[str, Any], base: Path = Path(".")) -> Config:
    _only(data, "", {"mirror", "registries", "auth"})
    mirror = _table(data, "mirror")
    _only(mirror, "mirror.", {"domain", "default", "hosts"})
    registries = dict(CATALOG)
    for key, entry in _table(data, "registries").items():
        registries[key.lower()] = _registry(key.lower(), entry, registries.get(key.lower()), base)
    names = {n for r in registries.values() for n in (r.key, *r.aliases)}

    domain = _str(mirror, "domain", "mirror.").lower()
    if domain and not valid_host(domain):
        raise ConfigError(f"mirror.domain: not a host name: {domain!r}")
    default = _str(mirror, "default", "mirror.").lower()
    if default and default not in names:
        raise ConfigError(f"mirror.default: unknown registry {default!r}")
    hosts: dict[str, str] = {}
    for host, key in _table(mirror, "hosts", "mirror.").items():
        where = f"mirror.hosts.{host!r}"
        if not isinstance(key, str) or key.lower() not in names:
            raise ConfigError(f"{where}: unknown registry {key!r}")
        if not valid_host(host):
            raise ConfigError(f"{where}: not a host name")
        hosts[host.lower()] = key.lower()
    return Config(registries, hosts, domain, default, _client_auth(_table(data, "auth"), base))


def _registry(key: str, entry: Any, known: Registry | None, base: Path) -> Registry:
    where = f"registries.{key!r}"
    if not isinstance(entry, dict):
        raise ConfigError(f"{where}: must be a table")
    _only(
        entry,
        where + ".",
        {"url", "subdomain", "aliases", "dockerhub", "username", "password", "password_env",
         "password_file", "allow", "deny", "realm_hosts", "redirect_hosts"},
    )  # fmt: skip
    if not valid_host(key):
        raise ConfigError(f"{where}: a registry's name is its host name (ghcr.io, lab.local:5000)")
    url = _str(entry, "url", where + ".")
    if not url and known is None:
        raise ConfigError(f"{where}.url: required for a registry that is not built in")
    reg = known or Registry(key, parse_upstream(f"https://{key}", []))
    hub = entry.get("dockerhub", reg.dockerhub)
    if url:
        try:
            upstream = parse_upstream(url, [])
        except ValueError as e:
            raise ConfigError(f"{where}.url: {e}") from e
        # A built-in registry's realm hosts belong to its built-in upstream.
        realms = reg.realm_hosts if upstream.host == reg.upstream.host else ()
        reg = replace(reg, upstream=upstream, realm_hosts=realms)
    if not isinstance(hub, bool):
        raise ConfigError(f"{where}.dockerhub: must be true or false")
    subdomain = _str(entry, "subdomain", where + ".") or reg.subdomain
    if subdomain and not _SUBDOMAIN_RE.fullmatch(subdomain):
        raise ConfigError(f"{where}.subdomain: not a DNS label: {subdomain!r}")
    aliases = tuple(a.lower() for a in _strs(entry, "aliases", where + ".")) or reg.aliases
    return replace(
        reg,
        upstream=reg.upstream._replace(dockerhub=hub),
        subdomain=subdomain,
        aliases=aliases,
        username=_str(entry, "username", where + "."),
        password=_secret(entry, where, base),
        allow=_globs(entry, "allow", where),
        deny=_globs(entry, "deny", where),
        realm_hosts=_hosts(entry, "realm_hosts", where) or reg.realm_hosts,
        redirect_hosts=_hosts(entry, "redirect_hosts", where),
    )


def _secret(entry: dict[str, Any], where: str, base: Path) -> str:
    given = [k for k in ("password", "password_env", "password_file") if k in entry]
    if len(given) > 1:
        raise ConfigError(f"{where}: set only one of {', '.join(given)}")
    if given and not entry.get("username"):
        raise ConfigError(f"{where}.username: required with {given[0]}")
    if "password_env" in entry:
        var = _str(entry, "password_env", where + ".")
        if var not in os.environ:
            raise ConfigError(f"{where}.password_env: environment variable {var} is not set")
        return os.environ[var]
    if "password_file" in entry:
        path = base / _str(entry, "password_file", where + ".")
        return _read(path, f"{where}.password_file").strip()
    return _str(entry, "password", where + ".")


def _client_auth(auth: dict[str, Any], base: Path) -> ClientAuth:
    _only(auth, "auth.", {"htpasswd", "tokens", "tokens_file"})
    users: dict[str, bytes] = {}
    if htpasswd := _str(auth, "htpasswd", "auth."):
        users = parse_htpasswd(_read(base / htpasswd, "auth.htpasswd"), "auth.htpasswd")
    tokens = set(_strs(auth, "tokens", "auth."))
    if tokens_file := _str(auth, "tokens_file", "auth."):
        text = _read(base / tokens_file, "auth.tokens_file")
        tokens |= {t.strip() for t in text.splitlines() if t.strip() and not t.startswith("#")}
    if any(len(t) < 16 for t in tokens):
        raise ConfigError("auth.tokens: every token needs at least 16 characters")
    return ClientAuth(users, frozenset(tokens))


def parse_htpasswd(text: str, where: str) -> dict[str, bytes]:
    """`user:$2y$...` lines (htpasswd -B). Only bcrypt hashes are accepted."""
    users: dict[str, bytes] = {}
    for n, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        user, sep, hashed = line.partition(":")
        if not sep or not user or not hashed.startswith(("$2y$", "$2b$", "$2a$")):
            raise ConfigError(f"{where}: line {n}: expected user:bcrypt-hash (htpasswd -B)")
        users[user] = hashed.encode()
    return users


def _read(path: Path, where: str = "") -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, ValueError) as e:  # ValueError: not UTF-8, or a NUL in the file name
        reason = e.strerror if isinstance(e, OSError) else str(e)
        raise ConfigError(f"{where + ': ' if where else ''}cannot read {path}: {reason}") from e


def _table(data: dict[str, Any], key: str, prefix: str = "") -> dict[str, Any]:
    value = data.get(key, {})
    if not isinstance(value, dict):
        raise ConfigError(f"{prefix}{key}: must be a table")
    return value


def _str(data: dict[str, Any], key: str, prefix: str) -> str:
    value = data.get(key, "")
    if not isinstance(value, str):
        raise ConfigError(f"{prefix}{key}: must be a string")
    return value


def _strs(data: dict[str, Any], key: str, prefix: str) -> list[str]:
    value = data.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{prefix}{key}: must be a list of strings")
    return value


def _globs(entry: dict[str, Any], key: str, where: str) -> tuple[str, ...]:
    globs = _strs(entry, key, where + ".")
    for g in globs:
        if not _GLOB_RE.fullmatch(g):
            raise ConfigError(f"{where}.{key}: not a repository glob: {g!r}")
    return tuple(globs)


def _hosts(entry: dict[str, Any], key: str, where: str) -> tuple[str, ...]:
    hosts = _strs(entry, key, where + ".")
    for h in hosts:
        if not targets.valid_host(h):
            raise ConfigError(f"{where}.{key}: not a host name or IP address (no port): {h!r}")
    return tuple(targets.normal_host(h) for h in hosts)


def _only(data: dict[str, Any], prefix: str, allowed: set[str]) -> None:
    for key in data:
        if key not in allowed:
            raise ConfigError(f"{prefix}{key}: unknown key (expected one of {sorted(allowed)})")
