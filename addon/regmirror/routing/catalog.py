"""Well-known upstream registries, and what a registry entry of the mirror holds."""

import fnmatch
from dataclasses import dataclass, field

from .upstreams import Upstream, parse_upstream


@dataclass(frozen=True)
class Registry:
    """An upstream registry the mirror serves.

    `key` is the name clients use for it (`ghcr.io`): in path prefixes (`/v2/ghcr.io/...`),
    containerd's `?ns=ghcr.io`, and image references.
    """

    key: str
    upstream: Upstream
    subdomain: str = ""  # ghcr -> ghcr.<domain>
    aliases: tuple[str, ...] = ()  # other names of the same registry (index.docker.io)
    username: str = ""
    password: str = field(default="", repr=False)
    allow: tuple[str, ...] = ()  # repository globs; empty: everything
    deny: tuple[str, ...] = ()
    # Hosts its token realm may be on (besides its own host, and pinning it); empty: the
    # host of the first realm learned. Redirect targets inside the mirror's network that
    # are allowed. See targets.py.
    realm_hosts: tuple[str, ...] = ()
    redirect_hosts: tuple[str, ...] = ()

    @property
    def dockerhub(self) -> bool:
        return self.upstream.dockerhub

    @property
    def credentials(self) -> tuple[str, str] | None:
        return (self.username, self.password) if self.username else None

    def allows(self, name: str) -> bool:
        """Whether the repository (as the upstream names it) may be pulled through the mirror."""
        if any(fnmatch.fnmatchcase(name, g) for g in self.deny):
            return False
        return not self.allow or any(fnmatch.fnmatchcase(name, g) for g in self.allow)


def _entry(
    key: str, url: str, subdomain: str, *aliases: str, realm: tuple[str, ...], hub: bool = False
) -> Registry:
    upstream = parse_upstream(url, [key] if hub else [])._replace(dockerhub=hub)
    return Registry(key, upstream, subdomain, aliases, realm_hosts=realm)


# Registries every mirror knows. Only Docker Hub keeps official images under `library/`.
# `realm`: the hosts their Bearer challenges name, as seen in public client code and tests:
# `realm="https://auth.docker.io/token"`, quay.io `/v2/auth`, gcr.io and k8s.gcr.io
# `/v2/token`, ghcr.io `/token`, public.ecr.aws `/token/`, nvcr.io `/proxy_auth` (older
# clients saw https://authn.nvidia.com/token). registry.k8s.io answers `/v2/` with 200 and
# mcr.microsoft.com pulls anonymously (one test saw a realm on its own host), so a realm can
# only be on their own host. docker.cloudsmith.io: not verified, so no built-in host: its
# realm is pinned when first learned.
CATALOG: dict[str, Registry] = {
    r.key: r
    for r in (
        _entry(
            "docker.io",
            "https://registry-1.docker.io",
            "docker",
            "registry-1.docker.io",
            "index.docker.io",
            realm=("auth.docker.io",),
            hub=True,
        ),
        _entry("quay.io", "https://quay.io", "quay", realm=("quay.io",)),
        _entry("gcr.io", "https://gcr.io", "gcr", realm=("gcr.io",)),
        _entry("k8s.gcr.io", "https://k8s.gcr.io", "k8s-gcr", realm=("k8s.gcr.io",)),
        _entry("registry.k8s.io", "https://registry.k8s.io", "k8s", realm=("registry.k8s.io",)),
        _entry("ghcr.io", "https://ghcr.io", "ghcr", realm=("ghcr.io",)),
        _entry("public.ecr.aws", "https://public.ecr.aws", "ecr", realm=("public.ecr.aws",)),
        _entry("docker.cloudsmith.io", "https://docker.cloudsmith.io", "cloudsmith", realm=()),
        _entry(
            "mcr.microsoft.com", "https://mcr.microsoft.com", "mcr", realm=("mcr.microsoft.com",)
        ),
        _entry("nvcr.io", "https://nvcr.io", "nvcr", realm=("nvcr.io", "authn.nvidia.com")),
    )
}
