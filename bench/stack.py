"""The registries under test, all on 127.0.0.1, started and stopped by PID:

- `direct`: the upstream itself, distribution 2.8 with Docker-Hub-style token auth;
- `mirror`: regmirror (`mitmdump -s addon/mirror.py`) in front of the upstream, its cache off
  (`regmirror_cache=`): the pass-through path;
- `mirror_cache`: a second regmirror process with its pull-through cache on; restarted with an
  empty cache directory for every cold measurement, as the peer is;
- `mirror_dp`: a third one, its cache and its blob data plane on (`regmirror_blob_listen`, issue
  11): a hit of at least `regmirror_blob_redirect_min` gets a 307 to the data plane, which runs in
  the same process. A process of its own, since no request of the same 1 GiB blob would keep
  `mirror_cache`'s hit on the path through mitmproxy once the data plane is on;
- `peer`: distribution's own pull-through cache (`proxy.remoteurl`) in front of the upstream.
"""

from __future__ import annotations

import re
import shutil
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from tests.support.certs import self_signed
from tests.support.mirror import Mirror
from tests.support.registry import Registry, start_proxy_registry, start_token_registry
from tests.support.tokenserver import USERS, TokenServer

from .plan import MiB

TARGETS = ("direct", "mirror", "peer")
CACHED = "mirror_cache"
DATA_PLANE = "mirror_dp"
CACHING = (CACHED, DATA_PLANE)  # the mirrors with a cache
# the data plane's log line of a transfer it served: `pull blob … via data plane (TLS) -> 200 …`
DATA_PLANE_SERVED = re.compile(r"via data plane(?: \(TLS\))? -> 20[06] ")
TOKEN_LIFETIME = 3600  # seconds: longer than the whole benchmark
LOG_SETTLE = 0.3  # seconds a log line may come after the last byte its client got (loaded)
METRICS_PATH = "/_regmirror/metrics"
CACHE_SIZE_METRIC = "regmirror_cache_size_bytes"


def served_by_data_plane(log: str) -> int:
    """How many transfers a mirror's log shows the data plane served (200 or 206)."""
    return len(DATA_PLANE_SERVED.findall(log))


def metric_value(text: str, name: str) -> float | None:
    """The value of an unlabelled metric in Prometheus text ("name 1.5e+09"), or None."""
    m = re.search(rf"^{re.escape(name)} (\S+)$", text, re.MULTILINE)
    return float(m[1]) if m else None


@dataclass
class Stack:
    work: Path
    token_server: TokenServer
    upstream: Registry
    mirror: Mirror
    peer: Registry
    cached: Mirror
    data_plane: Mirror
    mirror_options: dict[str, str]
    data_plane_options: dict[str, str]
    peer_starts: int = field(default=1)
    cached_starts: int = field(default=1)
    peer_tls: Registry | None = None
    repos: list[str] = field(default_factory=list)  # what pull tokens cover (pull_token)
    _tokens: dict[str, str] = field(default_factory=dict)  # by caching mirror (cached_token)

    @classmethod
    def start(
        cls, work: Path, mirror_options: Mapping[str, str] | None = None, redirect_min: int = MiB
    ) -> Stack:
        """`redirect_min`: the data plane's regmirror_blob_redirect_min (bytes)."""
        work.mkdir(parents=True, exist_ok=True)
        token_server = TokenServer(work / "token", users=USERS, expires_in=TOKEN_LIFETIME).start()
        started: list[Registry | Mirror] = []
        try:
            upstream = start_token_registry(work / "upstream", token_server)
            started.append(upstream)
            config = work / "mirror.toml"
            config.write_text(f'[registries."docker.io"]\nurl = "{upstream.url}"\n')
            options = {"regmirror_config": str(config), **(mirror_options or {})}
            # The pass-through path, as before the cache; the cache has a process of its own
            # (issue 10), so that neither one's state leaks into the other's figures.
            passing = {"regmirror_cache": "", **options}
            mirror = Mirror(work / "mirror", upstream.url, passing).start()
            started.append(mirror)
            cached = _start_cached(work / f"{CACHED}-1", upstream.url, options)
            started.append(cached)
            dp_options = {**options, "regmirror_blob_redirect_min": str(redirect_min)}
            data_plane = _start_cached(work / f"{DATA_PLANE}-1", upstream.url, dp_options, True)
            started.append(data_plane)
            peer = start_proxy_registry(work / "peer-1", upstream.url)
            return cls(
                work, token_server, upstream, mirror, peer, cached, data_plane, options, dp_options
            )
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
        self.data_plane.stop()
        self.cached.stop()
        self.mirror.stop()
        self.upstream.stop()
        self.token_server.stop()

    def host(self, target: str) -> str:
        """host:port of a target (the peer's changes when it restarts)."""
        if target == "peer_tls":
            assert self.peer_tls is not None
            return self.peer_tls.host
        return {
            "direct": self.upstream.host,
            "mirror": self.mirror.host,
            CACHED: self.cached.host,
            DATA_PLANE: self.data_plane.host,
            "peer": self.peer.host,
        }[target]

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
            CACHED: self.cached.pid,
            DATA_PLANE: self.data_plane.pid,
            "peer": self._peer_pid(),
        }[target]

    @property
    def upstream_pid(self) -> int:
        assert self.upstream.proc is not None
        return self.upstream.proc.pid

    def _peer_pid(self) -> int:
        assert self.peer.proc is not None
        return self.peer.proc.pid

    def restart(self, target: str) -> None:
        """A cold `target`: a new process with empty storage."""
        if target in CACHING:
            self.restart_cached(target)
        else:
            self.restart_peer(target)

    def caching(self, target: str = CACHED) -> Mirror:
        """The process of a caching mirror (CACHING)."""
        return self.data_plane if target == DATA_PLANE else self.cached

    def restart_cached(self, target: str = CACHED) -> None:
        """A cold caching mirror: a new process with an empty cache directory (the old
        process's directory is deleted); the data plane's on a new free port."""
        old = self.caching(target)
        old.stop()
        shutil.rmtree(old.base_dir, ignore_errors=True)
        self.cached_starts += 1
        base = self.work / f"{target}-{self.cached_starts}"
        if target == DATA_PLANE:
            self.data_plane = _start_cached(base, self.upstream.url, self.data_plane_options, True)
        else:
            self.cached = _start_cached(base, self.upstream.url, self.mirror_options)
        self._tokens.pop(target, None)
        if self.repos:  # now, so that no measurement counts this token request upstream
            self.cached_token(target)

    def cached_token(self, target: str = CACHED) -> str:
        """An anonymous pull token for the repositories of pull_token() from a caching
        mirror's own realm, as skopeo gets one: the mirror serves hits only to tokens it
        handed out anonymously (a token it did not hand out is a client's own, whose reads
        the upstream must allow). One per process: the mirror keeps that record in memory."""
        if target not in self._tokens:
            params = [("service", self.token_server.service)]
            params += [("scope", f"repository:{r}:pull") for r in self.repos]
            r = httpx.get(f"{self.caching(target).url}/v2/auth", params=params, timeout=30)
            r.raise_for_status()
            self._tokens[target] = r.json()["token"]
        return self._tokens[target]

    def cache_size(self, target: str = CACHED) -> int:
        """Bytes committed to a caching mirror's cache, from its metrics."""
        r = httpx.get(self.caching(target).url + METRICS_PATH, timeout=10)
        r.raise_for_status()
        return int(metric_value(r.text, CACHE_SIZE_METRIC) or 0)

    def wait_committed(self, size: int, target: str = CACHED) -> float:
        """Wait until a caching mirror holds at least `size` bytes: it commits a fill (fsync,
        rename, index row) after its client got the last byte. The seconds waited."""
        return _wait(lambda: self.cache_size(target) >= size, f"{target}: {size} bytes committed")

    def data_plane_transfers(self) -> int:
        """Transfers the data plane has logged since its process started. It logs one just
        after its last byte, which the client may have before: the count once it holds still
        for LOG_SETTLE seconds."""
        count, since = served_by_data_plane(self.data_plane.log_text()), time.perf_counter()
        while time.perf_counter() - since < LOG_SETTLE:
            time.sleep(0.02)
            if (now := served_by_data_plane(self.data_plane.log_text())) != count:
                count, since = now, time.perf_counter()
        return count

    def wait_peer_stored(self, target: str, repo: str, digests: Iterable[str]) -> float:
        """Wait until distribution's proxy has stored the blobs `digests` for `repo`: it
        stores a blob from an upstream fetch of its own, beside the one it streams to the
        client, which ends later; until then it sends every request for it upstream again.
        The seconds waited."""
        registry = self.peer_tls if target == "peer_tls" else self.peer
        assert registry is not None
        links = [_layer_link(registry.data_dir, repo, d) for d in digests]
        return _wait(lambda: all(p.is_file() for p in links), f"{target}: {repo} stored")

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
        """An anonymous pull token for `repos`, as the upstream's token service issues it;
        cached_token() covers the same `repos` from then on."""
        self.repos = list(repos)
        scopes = [f"repository:{r}:pull" for r in repos]
        return self.token_server.issue_token(None, scopes=scopes)

    def push_token(self, repos: list[str]) -> str:
        access = [{"type": "repository", "name": r, "actions": ["pull", "push"]} for r in repos]
        return self.token_server.issue_token("pusher", access=access)


def _layer_link(data_dir: Path, repo: str, digest: str) -> Path:
    """Where distribution links a blob into a repository once it is stored."""
    algorithm, _, hex_ = digest.partition(":")
    layers = data_dir / "docker/registry/v2/repositories" / repo / "_layers"
    return layers / algorithm / hex_ / "link"


def _wait(done: Callable[[], bool], what: str, timeout: float = 60.0) -> float:
    start = time.perf_counter()
    while not done():
        if time.perf_counter() - start > timeout:
            raise TimeoutError(f"{what}: not after {timeout:.0f} s")
        time.sleep(0.02)
    return time.perf_counter() - start


def _start_cached(
    base: Path, upstream: str, options: Mapping[str, str], data_plane: bool = False
) -> Mirror:
    cache = {**options, "regmirror_cache": str(base / "cache")}
    if data_plane:
        cache["regmirror_blob_listen"] = "127.0.0.1:0"  # the 307 names the port it got
    return Mirror(base, upstream, cache, name=DATA_PLANE if data_plane else CACHED).start()
