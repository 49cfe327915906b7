import pytest
from regmirror.cli.references import BadReference, Reference
from regmirror.cli.warm import platform_matches, read_references


def test_a_list_skips_comments_and_blank_lines():
    lines = [
        "# the CI fleet's images",
        "",
        "nginx:1  # the proxy",
        "   ",
        "ghcr.io/org/app@" + "sha256:" + "a" * 64,
    ]
    assert read_references(lines, "images.txt") == [
        Reference("docker.io", "library/nginx", "1"),
        Reference("ghcr.io", "org/app", "", "sha256:" + "a" * 64),
    ]
    assert read_references(["# nothing", ""], "-") == []


def test_a_bad_line_is_named():
    with pytest.raises(BadReference, match=r"^images.txt line 3: 'Nginx': 'library/Nginx' is not"):
        read_references(["nginx:1", "", "Nginx"], "images.txt")


@pytest.mark.parametrize(
    "wanted, platform, matches",
    [
        ("linux/amd64", "linux/amd64", True),
        ("linux/arm64", "linux/arm64/v8", True),
        ("linux/arm/v7", "linux/arm/v7", True),
        ("linux/arm/v7", "linux/arm/v6", False),
        ("linux/arm/v7", "linux/arm", False),
        ("linux/arm64", "linux/amd64", False),
        ("linux/amd64", "unknown/unknown", False),
        ("linux/amd64", "", False),
    ],
)
def test_a_platform_takes_its_variants(wanted, platform, matches):
    assert platform_matches(wanted, platform) is matches
