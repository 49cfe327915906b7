"""A complete private upstream: token server + token-auth registry (+ redirector)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from .images import BuiltImage, push_all
from .redirector import Redirector
from .registry import Registry, start_token_registry
from .tokenserver import PUSHER_CREDS, USERS, TokenServer


@dataclass
class Upstream:
    """token_server, registry, redirector (or None); url/host are the redirector front if any,
    else the registry."""

    token_server: TokenServer
    registry: Registry
    redirector: Redirector | None = None

    @property
    def url(self) -> str:
        return self.redirector.url if self.redirector else self.registry.url

    @property
    def host(self) -> str:
        return self.url.removeprefix("http://")

    def stop(self) -> None:
        if self.redirector is not None:
            self.redirector.stop()
        self.registry.stop()
        self.token_server.stop()


UpstreamFactory = Callable[..., Upstream]


def start_upstream(
    base_dir: Path,
    images: Mapping[str, BuiltImage],
    repos: Sequence[str] | None = None,
    expires_in: int = 300,
    allow_anonymous: bool = True,
    redirect: bool = False,
) -> Upstream:
    """Start token server + registry, push `repos` of `images` (default all) as pusher,
    clear the token server's records, optionally wrap in a Redirector."""
    server = TokenServer(
        base_dir / "token", users=USERS, expires_in=expires_in, allow_anonymous=allow_anonymous
    ).start()
    up: Upstream | None = None
    try:
        up = Upstream(server, start_token_registry(base_dir / "registry", server))
        wanted = {r: images[r] for r in (repos if repos is not None else images)}
        push_all(up.registry, wanted, base_dir / "push", PUSHER_CREDS)
        server.clear()
        if redirect:
            up.redirector = Redirector(up.registry).start()
        return up
    except BaseException:
        if up is not None:
            up.stop()
        else:
            server.stop()
        raise
