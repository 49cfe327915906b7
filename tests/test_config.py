import re
from pathlib import Path

import pytest
from regmirror.routing.config import ConfigError, load_config, parse_config, parse_htpasswd

HASH = "$2y$05$abcdefghijklmnopqrstuu5Yk4nnNTAvYSZ4mOB7XqN0RCQ9r9XEy"


def test_defaults_are_the_catalogue():
    c = parse_config({})
    assert "ghcr.io" in c.registries and not c.hosts and not c.auth.enabled


def test_full_config(tmp_path, monkeypatch):
    monkeypatch.setenv("HUB_TOKEN", "from-env")
    (tmp_path / "lab.pw").write_text("from-file\n")
    (tmp_path / "htpasswd").write_text(f"# users\nalice:{HASH}\n")
    (tmp_path / "tokens").write_text("# ci\n" + "t" * 20 + "\n")
    (tmp_path / "mirror.toml").write_text(
        f"""
[mirror]
domain = "mirror.example"
default = "docker.io"
[mirror.hosts]
"hub.internal:5000" = "docker.io"

[registries."docker.io"]
username = "bob"
password_env = "HUB_TOKEN"
allow = ["library/*", "bitnami/*"]
deny = ["library/evil"]

[registries."lab.example"]
url = "http://127.0.0.1:5001"
subdomain = "lab"
dockerhub = true
username = "ci"
password_file = "lab.pw"

[auth]
htpasswd = "htpasswd"
tokens_file = "tokens"
tokens = ["{"s" * 16}"]
"""
    )
    c = load_config(str(tmp_path / "mirror.toml"))
    hub = c.registries["docker.io"]
    assert hub.credentials == ("bob", "from-env")
    assert hub.allows("library/nginx") and hub.allows("bitnami/redis")
    assert not hub.allows("library/evil") and not hub.allows("someone/else")
    assert hub.upstream.base == "https://registry-1.docker.io" and hub.dockerhub
    lab = c.registries["lab.example"]
    assert lab.upstream.base == "http://127.0.0.1:5001" and lab.dockerhub
    assert lab.credentials == ("ci", "from-file") and lab.subdomain == "lab"
    assert c.hosts == {"hub.internal:5000": "docker.io"}
    assert (c.domain, c.default) == ("mirror.example", "docker.io")
    assert c.auth.htpasswd == {"alice": HASH.encode()}
    moved = parse_config({"registries": {"docker.io": {"url": "http://127.0.0.1:5001"}}})
    assert moved.registries["docker.io"].dockerhub  # a new URL keeps Docker Hub's quirks
    assert c.auth.tokens == {"t" * 20, "s" * 16}
    assert "from-env" not in repr(c)


@pytest.mark.parametrize(
    "data,message",
    [
        ({"mirorr": {}}, "mirorr: unknown key"),
        ({"mirror": {"dfault": "x"}}, "mirror.dfault: unknown key"),
        ({"mirror": {"default": "nope.example"}}, "mirror.default: unknown registry"),
        ({"mirror": {"domain": "a b"}}, "mirror.domain: not a host name"),
        ({"mirror": {"hosts": {"h": "nope"}}}, "mirror.hosts.'h': unknown registry"),
        ({"registries": {"new.example": {}}}, "registries.'new.example'.url: required"),
        ({"registries": {"x.io": {"url": "ftp://x"}}}, "registries.'x.io'.url: upstream must"),
        ({"registries": {"x.io": {"url": "http://x", "dockerhub": "yes"}}}, "dockerhub: must be"),
        ({"registries": {"ghcr.io": {"subdomain": "Bad_Label"}}}, "subdomain: not a DNS label"),
        ({"registries": {"ghcr.io": {"password": "p"}}}, "ghcr.io'.username: required"),
        ({"registries": {"ghcr.io": {"username": "u", "password_env": "NOPE_NOT_SET"}}},
         "password_env: environment variable NOPE_NOT_SET is not set"),
        ({"registries": {"ghcr.io": {"username": "u", "password": "a", "password_env": "B"}}},
         "set only one of"),
        ({"registries": {"ghcr.io": {"allow": "library/*"}}}, "allow: must be a list"),
        ({"registries": {"ghcr.io": {"deny": ["a b"]}}}, "deny: not a repository glob"),
        ({"registries": {"ghcr.io": {"colour": 1}}}, "registries.'ghcr.io'.colour: unknown key"),
        ({"registries": {"ghcr.io": {"realm_hosts": "ghcr.io"}}}, "realm_hosts: must be a list"),
        ({"registries": {"ghcr.io": {"realm_hosts": ["10.0.0.6:5001"]}}},
         "ghcr.io'.realm_hosts: not a host name or IP address"),
        ({"registries": {"ghcr.io": {"redirect_hosts": ["http://s3.lab"]}}},
         "ghcr.io'.redirect_hosts: not a host name or IP address"),
        ({"registries": {"ghcr.io": {"redirect_hosts": ["*.lab"]}}}, "redirect_hosts: not a host"),
        ({"auth": {"tokens": ["short"]}}, "auth.tokens: every token needs at least 16"),
        ({"auth": {"htpasswd": "/nonexistent/htpasswd"}}, "auth.htpasswd: cannot read"),
    ],
)  # fmt: skip
def test_errors_name_the_key(data, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(".", r"\.")):
        parse_config(data)


def test_realm_and_redirect_hosts():
    c = parse_config(
        {
            "registries": {
                "lab.example": {
                    "url": "http://10.0.0.5:5000",
                    "realm_hosts": ["Token.Lab.", "[FD00::6]"],
                    "redirect_hosts": ["10.0.0.7", "::ffff:10.0.0.8"],
                },
                "quay.io": {"username": "u", "password": "p"},
                "ghcr.io": {"url": "https://ghcr.io:443", "redirect_hosts": ["s3.lab"]},
                "docker.io": {"url": "http://127.0.0.1:5001"},
                "gcr.io": {"url": "http://127.0.0.1:5002", "realm_hosts": ["127.0.0.3"]},
            }
        }
    )
    r = c.registries
    lab = r["lab.example"]
    assert (lab.realm_hosts, lab.redirect_hosts) == (
        ("token.lab", "fd00::6"),
        ("10.0.0.7", "10.0.0.8"),
    )
    # built-in realm hosts stay with the built-in upstream, and go when the URL moves
    assert r["quay.io"].realm_hosts == ("quay.io",)
    assert (r["ghcr.io"].realm_hosts, r["ghcr.io"].redirect_hosts) == (("ghcr.io",), ("s3.lab",))
    assert r["docker.io"].realm_hosts == () and r["docker.io"].redirect_hosts == ()
    assert r["gcr.io"].realm_hosts == ("127.0.0.3",)
    assert parse_config({}).registries["docker.io"].realm_hosts == ("auth.docker.io",)


def test_file_errors(tmp_path):
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(str(tmp_path / "missing.toml"))
    bad = tmp_path / "bad.toml"
    bad.write_text("[mirror\n")
    with pytest.raises(ConfigError, match="bad.toml"):
        load_config(str(bad))


def test_htpasswd():
    assert parse_htpasswd(f"alice:{HASH}\n\n# x\n", "f") == {"alice": HASH.encode()}
    with pytest.raises(ConfigError, match="line 1: expected user:bcrypt-hash"):
        parse_htpasswd("alice:{SHA}abc", "f")


def test_example_config_parses_with_every_key_enabled(tmp_path, monkeypatch):
    """The example in the repository, uncommented, is a valid configuration."""
    example = Path(__file__).parents[1] / "addon" / "regmirror.example.toml"
    toml_line = re.compile(r'(\[.*\]|"?[\w.:-]+"? = .*)')
    lines = [
        line.removeprefix("# ")
        for line in example.read_text().splitlines()
        if toml_line.fullmatch(line.removeprefix("# "))
    ]
    (tmp_path / "example.toml").write_text("\n".join(lines))
    (tmp_path / "htpasswd").write_text(f"alice:{HASH}\n")
    (tmp_path / "tokens").write_text("t" * 20 + "\n")
    monkeypatch.setenv("DOCKERHUB_TOKEN", "x")
    c = load_config(str(tmp_path / "example.toml"))
    assert c.domain == "mirror.example.com" and c.default == "docker.io"
    assert c.registries["docker.io"].allow == ("library/*", "bitnami/*")
    assert c.registries["lab.example"].upstream.base == "http://10.0.0.5:5000"
    assert c.registries["lab.example"].realm_hosts == ("10.0.0.6",)
    assert c.registries["lab.example"].redirect_hosts == ("10.0.0.7",)
    assert c.auth.enabled


# --- Properties (hypothesis) -------------------------------------------------------------

from hypothesis import example, given
from hypothesis import strategies as st
from regmirror.routing.upstreams import valid_host

from tests.strategies import props

# What tomllib produces: no lone surrogates in strings, keys always strings.
toml_scalars = st.one_of(
    st.text(max_size=12), st.integers(), st.floats(), st.booleans(), st.datetimes(), st.dates()
)
toml_values = st.recursive(
    toml_scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=8,
)
# Files next to the config (see config_dir) and names that cannot be read.
_files = st.sampled_from(["htpasswd", "bad-htpasswd", "tokens", "short-tokens", "latin1", "dir",
                          "missing", "", "a\x00b", "../" * 40 + "nope"])  # fmt: skip
_hosts = st.sampled_from(["ghcr.io", "docker.io", "lab.example:5000", "x:99999", "[::1]:5000",
                          "[:::]", "a b", "Docker.IO", ""]) | st.text(max_size=12)  # fmt: skip
_urls = st.sampled_from(["http://127.0.0.1:5001", "https://[::1]", "ftp://x", "http://x:99999",
                         "http://[x", "https://u@h", ""]) | st.text(max_size=12)  # fmt: skip
_strs = st.lists(st.text(max_size=20), max_size=3)


def _table(**fields):
    return st.fixed_dictionaries({}, optional={k: v | toml_values for k, v in fields.items()})


_registry = _table(
    url=_urls, subdomain=st.sampled_from(["lab", "Bad_Label", ""]), aliases=_strs,
    dockerhub=st.booleans(), username=st.sampled_from(["", "u"]), password=st.text(max_size=5),
    password_env=st.sampled_from(["HOME", "REGMIRROR_NOT_SET", "", "A=B", "a\x00b"]),
    password_file=_files, allow=_strs, deny=_strs,
)  # fmt: skip
configs = st.one_of(
    st.dictionaries(st.text(max_size=10), toml_values, max_size=3),
    _table(
        mirror=_table(domain=_hosts, default=_hosts, hosts=st.dictionaries(_hosts, _hosts)),
        registries=st.dictionaries(_hosts, _registry | toml_values, max_size=3),
        auth=_table(htpasswd=_files, tokens=_strs, tokens_file=_files),
    ),
)


@pytest.fixture(scope="module")
def config_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("config")
    (d / "htpasswd").write_text(f"alice:{HASH}\n")
    (d / "bad-htpasswd").write_text("alice:plain\n")
    (d / "tokens").write_text("t" * 20 + "\n")
    (d / "short-tokens").write_text("short\n")
    (d / "latin1").write_bytes("mot de passe é\n".encode("latin-1"))
    (d / "dir").mkdir()
    return d


@props(80)
@given(data=configs)
@example(data={"registries": {"lab.example": {"url": "http://x", "username": "u",
                                              "password_file": "latin1"}}})  # fmt: skip
@example(data={"auth": {"tokens_file": "a\x00b"}})
def test_prop_parse_config_raises_only_config_error(config_dir, data):
    try:
        c = parse_config(data, base=config_dir)
    except ConfigError:
        return
    names = {n for r in c.registries.values() for n in (r.key, *r.aliases)}
    assert set(c.hosts.values()) <= names and (not c.default or c.default in names)
    for r in c.registries.values():
        assert valid_host(r.key) and r.upstream.scheme in ("http", "https")


@props(100)
@given(st.binary(max_size=200))
@example(b"[mirror]\ndomain = '\xff'\n")
def test_prop_load_config_raises_only_config_error(tmp_path_factory, text):
    path = tmp_path_factory.getbasetemp() / "prop.toml"
    path.write_bytes(text)
    try:
        load_config(str(path))
    except ConfigError as e:
        assert str(e)
