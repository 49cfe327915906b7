"""The router's options: their help text is the user documentation."""

from collections.abc import Sequence

from .upstreams import DOCKER_HUB_HOSTS


def load_options(loader) -> None:
    loader.add_option(
        "regmirror_config",
        str,
        "",
        """
        Path of the mirror's TOML configuration (registries, host map, subdomain domain,
        credentials, allow/deny lists, client authentication); see
        regmirror.example.toml. Changes to the file apply without a restart.
        """,
    )
    loader.add_option(
        "regmirror_routes",
        Sequence[str],
        [],
        """
        Client-facing host to upstream registry, as HOST=URL, e.g.
        "hub.mirror.example=https://registry-1.docker.io". Repeat for several
        registries. When set, a host that nothing routes gets 404 with the list of
        routes instead of going to the upstream of --mode reverse:URL. A URL that the
        configuration already knows is that registry, with its allow/deny lists.
        """,
    )
    loader.add_option(
        "regmirror_dockerhub_hosts",
        Sequence[str],
        list(DOCKER_HUB_HOSTS),
        """
        Upstream hosts (host or host:port) that get Docker Hub's quirks: single-component
        names such as "nginx" are served as "library/nginx".
        """,
    )
    loader.add_option(
        "regmirror_catalog",
        bool,
        False,
        """
        Serve GET /v2/_catalog, the list of an upstream's repositories, filtered by the
        registry's allow/deny lists; only then does the token proxy ask upstreams for
        the "registry:catalog:*" scope. Off (the default): 403 DENIED, since a catalogue
        can name repositories the mirror does not serve.
        """,
    )
    loader.add_option(
        "regmirror_trust_forwarded",
        bool,
        False,
        """
        Trust X-Forwarded-Proto and X-Forwarded-Host from a TLS-terminating proxy in front
        of the mirror when building URLs handed to clients (token realm, redirects).
        Enable only behind such a proxy.
        """,
    )
