import pytest
from regmirror.cli.references import BadReference, Reference, parse_reference

D = "sha256:" + "ab" * 32


@pytest.mark.parametrize(
    "text, expected",
    [
        ("nginx", Reference("docker.io", "library/nginx", "latest")),
        ("nginx:1-alpine", Reference("docker.io", "library/nginx", "1-alpine")),
        ("bitnami/redis:7", Reference("docker.io", "bitnami/redis", "7")),
        ("docker.io/nginx:1", Reference("docker.io", "library/nginx", "1")),
        ("index.docker.io/library/nginx:1", Reference("docker.io", "library/nginx", "1")),
        ("registry-1.docker.io/nginx", Reference("docker.io", "library/nginx", "latest")),
        ("ghcr.io/org/app:v2", Reference("ghcr.io", "org/app", "v2")),
        ("GHCR.io/org/app", Reference("ghcr.io", "org/app", "latest")),
        ("ghcr.io/app", Reference("ghcr.io", "app", "latest")),  # no library/ elsewhere
        (f"quay.io/org/app@{D}", Reference("quay.io", "org/app", "", D)),
        ("localhost/app:1", Reference("localhost", "app", "1")),
        ("127.0.0.1:5001/org/app", Reference("127.0.0.1:5001", "org/app", "latest")),
        ("127.0.0.1:5001/org/app:3", Reference("127.0.0.1:5001", "org/app", "3")),
        (f"nginx@{D}", Reference("docker.io", "library/nginx", "", D)),
        ("  nginx:1  ", Reference("docker.io", "library/nginx", "1")),
    ],
)
def test_references_are_read_as_docker_reads_them(text, expected):
    assert parse_reference(text) == expected


def test_the_default_tag_and_the_printed_form():
    assert parse_reference("nginx", default_tag="stable").tag == "stable"
    assert str(parse_reference("nginx:1")) == "docker.io/library/nginx:1"
    assert str(parse_reference(f"ghcr.io/a/b@{D}")) == f"ghcr.io/a/b@{D}"
    assert parse_reference("ghcr.io/a/b").name == "ghcr.io/a/b"


@pytest.mark.parametrize(
    "text, says",
    [
        ("", "empty"),
        ("   ", "empty"),
        ("Nginx", "'library/Nginx' is not a repository name"),
        ("nginx:", "'' is not a tag"),
        ("nginx:-x", "'-x' is not a tag"),
        ("nginx@sha256:abc", "'sha256:abc' is not a digest"),
        (f"nginx:1@{D}", "a tag or a digest, not both"),
        ("ghcr.io/", "'' is not a repository name"),
        ("a b", "is not a repository name"),
        ("ghcr.io/org//app", "'org//app' is not a repository name"),
    ],
)
def test_bad_references_say_what_is_wrong(text, says):
    with pytest.raises(BadReference) as e:
        parse_reference(text)
    assert says in str(e.value)
    if text.strip():  # the message quotes what was given
        assert str(e.value).startswith(f"{text.strip()!r}: ")
