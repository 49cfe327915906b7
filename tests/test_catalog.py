import pytest
from regmirror.routing.catalog import CATALOG, Registry
from regmirror.routing.upstreams import parse_upstream

# key: (upstream base, subdomain, aliases, realm_hosts)
BUILT_IN = {
    "docker.io": (
        "https://registry-1.docker.io",
        "docker",
        ("registry-1.docker.io", "index.docker.io"),
        ("auth.docker.io",),
    ),
    "quay.io": ("https://quay.io", "quay", (), ("quay.io",)),
    "gcr.io": ("https://gcr.io", "gcr", (), ("gcr.io",)),
    "k8s.gcr.io": ("https://k8s.gcr.io", "k8s-gcr", (), ("k8s.gcr.io",)),
    "registry.k8s.io": ("https://registry.k8s.io", "k8s", (), ("registry.k8s.io",)),
    "ghcr.io": ("https://ghcr.io", "ghcr", (), ("ghcr.io",)),
    "public.ecr.aws": ("https://public.ecr.aws", "ecr", (), ("public.ecr.aws",)),
    "docker.cloudsmith.io": ("https://docker.cloudsmith.io", "cloudsmith", (), ()),
    "mcr.microsoft.com": ("https://mcr.microsoft.com", "mcr", (), ("mcr.microsoft.com",)),
    "nvcr.io": ("https://nvcr.io", "nvcr", (), ("nvcr.io", "authn.nvidia.com")),
}


def registry(**fields) -> Registry:
    return Registry("lab.example", parse_upstream("http://127.0.0.1:5001", []), **fields)


def test_the_built_in_registries():
    assert set(CATALOG) == set(BUILT_IN)
    for key, (base, subdomain, aliases, realm_hosts) in BUILT_IN.items():
        reg = CATALOG[key]
        got = (reg.key, reg.upstream.base, reg.subdomain, reg.aliases, reg.realm_hosts)
        assert got == (key, base, subdomain, aliases, realm_hosts)
        # anonymous, unrestricted and without internal redirect targets until configured
        assert (reg.credentials, reg.allow, reg.deny, reg.redirect_hosts) == (None, (), (), ())


def test_only_docker_hub_has_docker_hubs_quirks():
    assert [k for k, r in CATALOG.items() if r.dockerhub] == ["docker.io"]
    assert CATALOG["docker.io"].upstream.dockerhub


def test_subdomains_and_names_are_unique():
    subdomains = [r.subdomain for r in CATALOG.values()]
    assert len(set(subdomains)) == len(subdomains)
    names = [n for r in CATALOG.values() for n in (r.key, *r.aliases)]
    assert len(set(names)) == len(names)


@pytest.mark.parametrize(
    "allow, deny, name, allowed",
    [
        ((), (), "anything/at/all", True),  # no lists: everything
        (("library/*",), (), "library/nginx", True),
        (("library/*",), (), "bitnami/redis", False),
        (("library/*",), (), "library", False),  # the glob needs the slash
        # fnmatch's `*` crosses `/`: a glob covers nested repositories too
        (("org/*",), (), "org/team/app", True),
        ((), ("org/*",), "org/team/app", False),
        (("library/*",), ("library/ubuntu",), "library/ubuntu", False),  # deny wins
        (("library/*",), ("library/ubuntu",), "library/ubuntu-debug", True),  # exact only
        (("library/*",), ("library/ubuntu",), "library/nginx", True),
        ((), ("private/*",), "public/app", True),  # only a deny list: the rest is served
        ((), ("private/*",), "private/secret", False),
        (("library/nginx",), (), "library/nginx", True),
        (("library/nginx",), (), "library/nginx2", False),  # no glob: the name only
        (("library/*",), (), "Library/nginx", False),  # case-sensitive, as names are
        ((), ("library/*",), "LIBRARY/nginx", True),
        (("team/app?",), (), "team/app1", True),
        (("team/app?",), (), "team/app12", False),
        (("team/[ab]*",), (), "team/beta", True),
        (("team/[ab]*",), (), "team/gamma", False),
        (("a/*", "b/*"), (), "b/x", True),  # any allow glob
        ((), ("a/*", "b/*"), "b/x", False),  # any deny glob
        (("*",), ("*",), "x", False),
    ],
)
def test_allows(allow, deny, name, allowed):
    assert registry(allow=allow, deny=deny).allows(name) is allowed


@pytest.mark.parametrize(
    "username, password, credentials",
    [
        ("", "", None),
        ("", "a password without a user", None),
        ("alice", "wonderland", ("alice", "wonderland")),
        ("alice", "", ("alice", "")),  # a user with an empty password is still a login
    ],
)
def test_credentials(username, password, credentials):
    assert registry(username=username, password=password).credentials == credentials


def test_the_password_stays_out_of_its_repr():
    text = repr(registry(username="alice", password="wonderland"))
    assert "alice" in text and "wonderland" not in text


def test_docker_hubs_quirks_follow_the_upstream():
    hub = parse_upstream("http://127.0.0.1:5001", ["127.0.0.1:5001"])
    assert Registry("hub.lab", hub).dockerhub
    assert not registry().dockerhub
