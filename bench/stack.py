"""The three registries under test, all on 127.0.0.1, started and stopped by PID:

- `direct`: the upstream itself, distribution 2.8 with Docker-Hub-style token auth;
- `mirror`: regmirror (`mitmdump -s addon/mirror.py`) in front of the upstream;
- `peer`: distribution's own pull-through cache (`proxy.remoteurl`) in front of the upstream.
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.certs import self_signed
from tests.support.mirror import Mirror
from tests.support.registry import Registry, start_proxy_registry, start_token_registry
from tests.support.tokenserver import USERS, TokenServer

TARGETS = ("direct", "mirror", "peer")
TOKEN_LIFETIME = 3600  # seconds: longer than the whole benchmark


@dataclass
class Stack:
    work: Path
    token_server: TokenServer
    upstream: Registry
    mirror: Mirror
    peer: Registry
    peer_starts: int = field(default=1)
    peer_tls: Registry | None = None

    @classmethod
    def start(cls, work: Path, mirror_options: Mapping[str, str] | None = None) -> Stack:
        work.mkdir(parents=True, exist_ok=True)
        token_server = TokenServer(work / "token", users=USERS, expires_in=TOKEN_LIFETIME).start()
        started: list[Registry | Mirror] = []
        try:
            upstream = start_token_registry(work / "upstream", token_server)
            started.append(upstream)
            config = work / "mirror.toml"
            config.write_text(f'[registries."docker.io"]\nurl = "{upstream.url}"\n')
            # The pass-through path, as before the cache: a cached blob is another path, with
            # figures of its own (issue 10).
            options = {"regmirror_config": str(config), "regmirror_cache": "",
                       **(mirror_options or {})}  # fmt: skip
            mirror = Mirror(work / "mirror", upstream.url, options).start()
            started.append(mirror)
            peer = start_proxy_registry(work / "peer-1", upstream.url)
            return cls(work, token_server, upstream, mirror, peer)
        except BaseException:
            for proc in reversed(started):
                proc.stop()
            token_server.stop()
            raise

    @property
    def mirror_speaks_tls(self) -> bool:
        """False when the mirror runs with regmirror_tls=false (plain HTTP only)."""
        return str(self.mirror.options.get("regmirror_tls", True)).lower() != "false"

    def stop(self) -> None:
        if self.peer_tls is not None:
            self.peer_tls.stop()
        self.peer.stop()
        self.mirror.stop()
        self.upstream.stop()
        self.token_server.stop()

    def host(self, target: str) -> str:
        """host:port of a target (the peer's changes when it restarts)."""
        if target == "peer_tls":
            assert self.peer_tls is not None
            return self.peer_tls.host
        return {"direct": self.upstream.host, "mirror": self.mirror.host, "peer": self.peer.host}[
            target
        ]

    def url(self, target: str) -> str:
        return f"http://{self.host(target)}"

    def pid(self, target: str) -> int:
        """The process a client of `target` talks to."""
        if target == "peer_tls":
            assert self.peer_tls is not None and self.peer_tls.proc is not None
            return self.peer_tls.proc.pid
        return {
            "direct": self.upstream_pid,
            "mirror": self.mirror.pid,
            "peer": self._peer_pid(),
        }[target]

    @property
    def upstream_pid(self) -> int:
        assert self.upstream.proc is not None
        return self.upstream.proc.pid

    def _peer_pid(self) -> int:
        assert self.peer.proc is not None
        return self.peer.proc.pid

    def restart_peer(self, target: str = "peer") -> None:
        """A cold peer: a new process with empty storage (the old one's is deleted)."""
        old: Registry | None = self.peer_tls if target == "peer_tls" else self.peer
        if old is not None:
            old.stop()
            shutil.rmtree(old.base_dir, ignore_errors=True)
        self.peer_starts += 1
        base = self.work / f"{target}-{self.peer_starts}"
        if target == "peer_tls":
            base.mkdir(parents=True)
            cert, key = base / "cert.pem", base / "key.pem"
            self_signed(cert, key)
            self.peer_tls = Registry(
                base,
                "proxy",
                remote_url=self.upstream.url,
                tls=(cert, key),
                name="registry-proxy-tls",
            )
            self.peer_tls.start()
        else:
            self.peer = start_proxy_registry(base, self.upstream.url)

    def pull_token(self, repos: list[str]) -> str:
        """An anonymous pull token for `repos`, as the upstream's token service issues it."""
        scopes = [f"repository:{r}:pull" for r in repos]
        return self.token_server.issue_token(None, scopes=scopes)

    def push_token(self, repos: list[str]) -> str:
        access = [{"type": "repository", "name": r, "actions": ["pull", "push"]} for r in repos]
        return self.token_server.issue_token("pusher", access=access)
