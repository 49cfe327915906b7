"""CNCF distribution 2.8 (`docker-registry serve`) in three flavours: token, plain, proxy."""

from __future__ import annotations

import json
import re
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .procs import (
    PORT_ATTEMPTS,
    Proc,
    Service,
    StartupError,
    bind_failed,
    free_port,
    require_binary,
)
from .tokenserver import TokenServer

REGISTRY_BIN = "/usr/bin/docker-registry"
ACCESS_LINE = re.compile(
    r'"(?P<method>[A-Z]+) (?P<path>\S+) HTTP/[0-9.]+" (?P<status>\d{3}) \S+ '
    r'"[^"]*" "(?P<agent>[^"]*)"'
)


@dataclass(frozen=True)
class AccessLogEntry:
    method: str
    path: str  # with query string
    status: int
    user_agent: str


class Registry(Service):
    """One distribution process: url, port, host, data_dir, service, kind, log_text()."""

    def __init__(
        self,
        base_dir: Path,
        kind: str = "plain",
        token_server: TokenServer | None = None,
        remote_url: str | None = None,
        remote_username: str | None = None,
        remote_password: str | None = None,
        name: str = "registry",
        tls: tuple[Path, Path] | None = None,
    ) -> None:
        """tls: (certificate, key) PEM files to serve HTTPS instead of plain HTTP."""
        if kind not in ("plain", "token", "proxy"):
            raise ValueError(f"unknown registry kind {kind!r}")
        if kind == "token" and token_server is None:
            raise ValueError("token registry needs a token_server")
        if kind == "proxy" and not remote_url:
            raise ValueError("proxy registry needs remote_url")
        self.kind = kind
        self.name = name
        self.base_dir = base_dir
        self.data_dir = base_dir / "data"
        self.config_path = base_dir / "config.yml"
        self.token_server = token_server
        self.service = token_server.service if token_server else None
        self.remote_url = remote_url
        self.remote_username = remote_username
        self.remote_password = remote_password
        self.tls = tls
        self.port = free_port()
        self.proc: Proc | None = None

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://{self.host}"

    def config(self) -> dict[str, Any]:
        cfg: dict[str, Any] = {
            "version": 0.1,
            "log": {"level": "warn", "formatter": "text"},
            "storage": {
                "filesystem": {"rootdirectory": str(self.data_dir)},
                "delete": {"enabled": True},
                "maintenance": {"uploadpurging": {"enabled": False}},
            },
            "http": {
                "addr": self.host,
                "secret": secrets.token_hex(16),
                "headers": {"X-Content-Type-Options": ["nosniff"]},
            },
        }
        if self.kind == "token":
            assert self.token_server is not None
            cfg["auth"] = {
                "token": {
                    "realm": self.token_server.realm,
                    "service": self.token_server.service,
                    "issuer": self.token_server.issuer,
                    "rootcertbundle": str(self.token_server.cert_path),
                }
            }
        if self.kind == "proxy":
            proxy: dict[str, str] = {"remoteurl": str(self.remote_url)}
            if self.remote_username is not None:
                proxy["username"] = self.remote_username
                proxy["password"] = self.remote_password or ""
            cfg["proxy"] = proxy
        if self.tls:
            cfg["http"]["tls"] = {"certificate": str(self.tls[0]), "key": str(self.tls[1])}
        return cfg

    def start(self, timeout: float = 15.0) -> Registry:
        binary = require_binary(REGISTRY_BIN)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        for attempt in range(PORT_ATTEMPTS):
            # JSON is valid YAML for distribution's config parser.
            self.config_path.write_text(json.dumps(self.config(), indent=2))
            name = f"{self.name}-{attempt}" if attempt else self.name
            self.proc = Proc([binary, "serve", str(self.config_path)], self.base_dir, name)
            try:
                self.proc.start(ready=lambda p: p.wait_for_http(f"{self.url}/v2/", timeout))
                return self
            except StartupError:
                if not bind_failed(self.proc.log_text()):
                    raise
                self.port = free_port()
        raise StartupError(f"{self.name}: no free port after {PORT_ATTEMPTS} attempts")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.stop()

    def access_log(self) -> list[AccessLogEntry]:
        """Requests distribution served so far (from its access log), oldest first."""
        out = []
        for line in self.log_text().splitlines():
            m = ACCESS_LINE.search(line)
            if m:
                out.append(AccessLogEntry(m["method"], m["path"], int(m["status"]), m["agent"]))
        return out

    def blob_path(self, digest: str) -> Path:
        """Filesystem path of a blob in distribution's storage layout."""
        algo, _, hexpart = digest.partition(":")
        if algo != "sha256" or len(hexpart) != 64:
            raise ValueError(f"unsupported digest {digest!r}")
        return self.data_dir / "docker/registry/v2/blobs/sha256" / hexpart[:2] / hexpart / "data"

    def has_blob(self, digest: str) -> bool:
        return self.blob_path(digest).is_file()

    def repositories(self) -> list[str]:
        """Repository names present on disk (what was pushed or proxied)."""
        root = self.data_dir / "docker/registry/v2/repositories"
        if not root.is_dir():
            return []
        return sorted(
            str(p.parent.relative_to(root)) for p in root.rglob("_manifests") if p.is_dir()
        )


def start_token_registry(base_dir: Path, token_server: TokenServer) -> Registry:
    return Registry(base_dir, "token", token_server=token_server, name="registry-token").start()


def start_plain_registry(base_dir: Path) -> Registry:
    return Registry(base_dir, "plain", name="registry-plain").start()


def start_proxy_registry(
    base_dir: Path,
    remote_url: str,
    username: str | None = None,
    password: str | None = None,
) -> Registry:
    """distribution's own pull-through cache (peer for benchmarks)."""
    return Registry(
        base_dir,
        "proxy",
        remote_url=remote_url,
        remote_username=username,
        remote_password=password,
        name="registry-proxy",
    ).start()
