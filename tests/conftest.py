"""Session fixtures: token server, registries with test images, redirecting upstream,
real clients (skopeo, dockerd, containerd, podman) and the mirror launcher.

Credentials: alice:wonderland (may pull private/*), pusher:pushpass (used to push).
All images are tagged "1"; see tests/support/images.py build_standard_images().
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
from regmirror.transport.upstream import UpstreamConnections

from tests.support.cache_backends import BucketCache, CacheBackend, DiskCache
from tests.support.clients import Containerd, Dockerd, DockerdFactory, Podman, Skopeo
from tests.support.images import BuiltImage, build_standard_images, push_all
from tests.support.mirror import Mirror, MirrorFactory
from tests.support.procs import Proc
from tests.support.redirector import Redirector
from tests.support.registry import Registry, start_plain_registry, start_token_registry
from tests.support.s3server import CREDENTIALS as S3_CREDENTIALS
from tests.support.s3server import S3Server
from tests.support.tokenserver import PUSHER_CREDS, USERS, TokenServer
from tests.support.upstream import Upstream, UpstreamFactory, start_upstream

# Logs shown in the report of a failing test: (title, Proc) registered by fixtures.
_SESSION_LOGS: list[tuple[str, Proc]] = []
_TEST_LOGS = pytest.StashKey[list[tuple[str, Proc]]]()
LOG_TAIL_LINES = 60
SESSION_LOG_TAIL_LINES = 20


def _register_log(title: str, proc: Proc | None, item: pytest.Item | None = None) -> None:
    if proc is None:
        return
    if item is None:
        _SESSION_LOGS.append((title, proc))
    else:
        item.stash.setdefault(_TEST_LOGS, []).append((title, proc))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    if report.when != "call" or not report.failed:
        return
    logs = [(t, p, LOG_TAIL_LINES) for t, p in item.stash.get(_TEST_LOGS, [])]
    logs += [(t, p, SESSION_LOG_TAIL_LINES) for t, p in _SESSION_LOGS]
    for title, proc, lines in logs:
        tail = "\n".join(proc.log_text().splitlines()[-lines:])
        report.sections.append((f"{title} log (tail, {proc.log_path})", tail))


@pytest.fixture(autouse=True)
def _no_crash_in_mirror_logs(request: pytest.FixtureRequest) -> Iterator[None]:
    """Fail any test after which a mirror's log shows a hook that raised."""
    seen = {id(m): len(m.log_text()) for m in Mirror.started}
    yield
    if request.node.get_closest_marker("crash_expected"):
        return
    found = {
        f"{m.name} ({m.proc.log_path if m.proc else '?'})": lines
        for m in Mirror.started
        if (lines := m.crashes(seen.get(id(m), 0)))
    }
    if found:
        pytest.fail(f"a mirror hook raised: {found}", pytrace=False)


@pytest.fixture(autouse=True)
def _named_upstreams_reachable(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    """In-process tests name real hosts (auth.docker.io), and this machine has no internet:
    the mirror's connect check (which tells an outage, for offline answers) says they are
    up. End-to-end tests and tests marked `real_connect` check for real."""
    if request.node.get_closest_marker("e2e") or request.node.get_closest_marker("real_connect"):
        return

    async def reachable(self: UpstreamConnections, host: str, port: int, remembered: bool = True):
        return None

    monkeypatch.setattr(UpstreamConnections, "unreachable", reachable)


# ------------------------------------------------------------------------------------------
# upstream side
# ------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def token_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TokenServer]:
    """Token service (service "test-registry"); users alice and pusher."""
    server = TokenServer(tmp_path_factory.mktemp("token"), users=USERS).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def images(tmp_path_factory: pytest.TempPathFactory) -> dict[str, BuiltImage]:
    """BuiltImage per repository: library/testimg, library/multi, private/secret, org/app,
    library/big (all tag "1")."""
    return build_standard_images(tmp_path_factory.mktemp("layouts"))


@pytest.fixture(scope="session")
def registry(
    tmp_path_factory: pytest.TempPathFactory,
    token_server: TokenServer,
    images: dict[str, BuiltImage],
) -> Iterator[Registry]:
    """Token-auth distribution (the 'Docker Hub') holding all test images."""
    reg = start_token_registry(tmp_path_factory.mktemp("registry-token"), token_server)
    _register_log("token registry", reg.proc)
    try:
        push_all(reg, images, tmp_path_factory.mktemp("push-token"), PUSHER_CREDS)
        token_server.clear()
        yield reg
    finally:
        reg.stop()


@pytest.fixture(scope="session")
def plain_registry(
    tmp_path_factory: pytest.TempPathFactory, images: dict[str, BuiltImage]
) -> Iterator[Registry]:
    """Distribution without auth holding the same test images (private/secret too)."""
    reg = start_plain_registry(tmp_path_factory.mktemp("registry-plain"))
    _register_log("plain registry", reg.proc)
    try:
        push_all(reg, images, tmp_path_factory.mktemp("push-plain"), None)
        yield reg
    finally:
        reg.stop()


@pytest.fixture(scope="session")
def redirector(registry: Registry) -> Iterator[Redirector]:
    """Docker-Hub+S3-like front around `registry`: blob GET/HEAD -> 307 to a blob server."""
    red = Redirector(registry).start()
    try:
        yield red
    finally:
        red.stop()


@pytest.fixture
def upstream_factory(
    request: pytest.FixtureRequest, tmp_path: Path, images: dict[str, BuiltImage]
) -> Iterator[UpstreamFactory]:
    """factory(repos=None|[...], expires_in=300, allow_anonymous=True, redirect=False)
    -> Upstream: a fresh token server + token registry (+ redirector) for one test, e.g. to
    stop the upstream mid-test or use short-lived tokens. repos: which standard images to
    push (default all). Everything is stopped after the test."""
    made: list[Upstream] = []

    def factory(
        repos: Sequence[str] | None = None,
        expires_in: int = 300,
        allow_anonymous: bool = True,
        redirect: bool = False,
    ) -> Upstream:
        name = f"upstream{len(made)}"
        up = start_upstream(tmp_path / name, images, repos, expires_in, allow_anonymous, redirect)
        made.append(up)
        _register_log(f"{name} registry", up.registry.proc, request.node)
        return up

    try:
        yield factory
    finally:
        for up in reversed(made):
            up.stop()


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """moto's S3 server, standing in for real S3 (s3server.py says what it cannot show)."""
    with S3Server(tmp_path_factory.mktemp("s3")) as server:
        yield server


@pytest.fixture(params=["disk", "s3"])
def cache_backend(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> CacheBackend:
    """The test's cache: a directory, then (the same test again) a new bucket of the S3
    stand-in, whose credentials the mirrors started by the test get in their environment."""
    if request.param == "disk":
        return DiskCache(tmp_path / "cache")
    for name, value in S3_CREDENTIALS.items():
        monkeypatch.setenv(name, value)
    return BucketCache(request.getfixturevalue("s3_server"))


@pytest.fixture
def clean_records(token_server: TokenServer) -> TokenServer:
    """The session token server, its records cleared before the test."""
    token_server.clear()
    return token_server


# ------------------------------------------------------------------------------------------
# clients
# ------------------------------------------------------------------------------------------


@pytest.fixture
def skopeo(tmp_path: Path) -> Skopeo:
    """skopeo with a fresh isolated environment (own blob-info cache) per test."""
    return Skopeo(tmp_path / "skopeo")


@pytest.fixture
def dockerd_factory(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[DockerdFactory]:
    """factory(mirrors=[url, ...], insecure_registries=[...], debug=False) -> started Dockerd.
    Each daemon has an empty image store; all are stopped after the test."""
    started: list[Dockerd] = []

    def factory(
        mirrors: Sequence[str] = (),
        insecure_registries: Sequence[str] = (),
        debug: bool = False,
    ) -> Dockerd:
        name = f"dockerd{len(started)}"
        daemon = Dockerd(tmp_path / name, mirrors, insecure_registries, debug, name=name)
        started.append(daemon)
        daemon.start()
        _register_log(name, daemon.proc, request.node)
        return daemon

    try:
        yield factory
    finally:
        for daemon in reversed(started):
            daemon.stop()


@pytest.fixture(scope="session")
def containerd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Containerd]:
    """One containerd for the session; use containerd.new_namespace() for a fresh store."""
    daemon = Containerd(tmp_path_factory.mktemp("containerd")).start()
    _register_log("containerd", daemon.proc)
    try:
        yield daemon
    finally:
        daemon.stop()


@pytest.fixture
def hosts_dir(tmp_path: Path) -> Path:
    """An empty directory for containerd hosts.toml files (see clients.write_hosts_toml)."""
    path = tmp_path / "certs.d"
    path.mkdir()
    return path


@pytest.fixture
def podman_factory(tmp_path: Path) -> Iterator[Callable[..., Podman]]:
    """factory(mirror="127.0.0.1:PORT" | None) -> Podman with its own vfs storage."""
    made: list[Podman] = []

    def factory(mirror: str | None = None, prefix: str = "docker.io") -> Podman:
        pm = Podman(tmp_path / f"podman{len(made)}", mirror=mirror, prefix=prefix)
        made.append(pm)
        return pm

    try:
        yield factory
    finally:
        for pm in made:
            pm.cleanup()


# ------------------------------------------------------------------------------------------
# the mirror
# ------------------------------------------------------------------------------------------


@pytest.fixture
def mirror_factory(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[MirrorFactory]:
    """factory(upstream_url, options={...}, extra_args=[...], script=None) -> started Mirror.

    Runs `mitmdump -s addon/mirror.py --mode reverse:UPSTREAM@127.0.0.1:PORT --set
    confdir=... --set k=v ...`; every mirror is stopped after the test. A failing test's
    report shows the tail of each mirror's log."""
    started: list[Mirror] = []

    def factory(
        upstream: str,
        options: Mapping[str, Any] | None = None,
        extra_args: Sequence[str] = (),
        script: Path | None = None,
    ) -> Mirror:
        name = f"mirror{len(started)}"
        mirror = Mirror(tmp_path / name, upstream, options, extra_args, script, name=name)
        started.append(mirror)
        mirror.start()
        _register_log(name, mirror.proc, request.node)
        return mirror

    try:
        yield factory
    finally:
        for mirror in reversed(started):
            mirror.stop()
