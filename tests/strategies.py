"""Hypothesis strategies shared by the property tests at the end of the unit test files."""

import string

from hypothesis import settings
from hypothesis import strategies as st


def props(max_examples: int) -> settings:
    """Settings of a property test: a bounded number of examples (the whole set of properties
    adds about 10 s to the suite), no deadline (a loaded machine must not fail a test)."""
    return settings(max_examples=max_examples, deadline=None)


# Any str at all: control characters, lone surrogates, non-ASCII digits and spaces.
any_char = st.characters(blacklist_categories=())
any_text = st.text(any_char, max_size=40)
# What mitmproxy makes of bytes that are not UTF-8: `b.decode("utf8", "surrogateescape")`.
escaped_text = st.binary(max_size=40).map(lambda b: b.decode("utf8", "surrogateescape"))
# Very long inputs, made of a repeated piece.
long_text = st.builds(lambda piece, n: piece * n, st.text(any_char, min_size=1, max_size=4),
                      st.integers(1000, 5000))  # fmt: skip
wild_text = st.one_of(any_text, escaped_text, long_text)
# Text as it arrives from the network: printable ASCII, or any of the above.
ascii_text = st.text(string.printable, max_size=40)
header_text = st.one_of(ascii_text, wild_text)
# Text as mitmproxy hands it over (headers, paths, queries, forms): any Unicode, and bytes
# that are not UTF-8 as surrogate escapes; never other lone surrogates.
mitm_text = st.one_of(ascii_text, st.text(max_size=40), escaped_text)

# The distribution spec's grammar of repository names, tags and digests.
_LOWER_ALNUM = string.ascii_lowercase + string.digits
_alnum = st.text(_LOWER_ALNUM, min_size=1, max_size=6)
# Words of the API are valid path components: `a/blobs/uploads` is a repository name.
_API_WORDS = ("manifests", "blobs", "uploads", "blobs/uploads", "tags/list", "referrers", "v2")


@st.composite
def _component(draw: st.DrawFn) -> str:
    if draw(st.integers(0, 3)) == 0:
        return draw(st.sampled_from(_API_WORDS))
    parts = draw(st.lists(_alnum, min_size=1, max_size=3))
    seps = draw(st.lists(st.sampled_from([".", "_", "__", "-", "--"]), min_size=len(parts)))
    return parts[0] + "".join(s + p for s, p in zip(seps, parts[1:], strict=False))


repo_names = (
    st.lists(_component(), min_size=1, max_size=5).map("/".join).filter(lambda n: len(n) <= 255)
)
tags = st.builds(
    lambda first, rest: first + rest,
    st.sampled_from(string.ascii_letters + string.digits + "_"),
    st.text(string.ascii_letters + string.digits + "._-", max_size=127),
)
_other_algorithm = (
    st.lists(_alnum, min_size=1, max_size=3)
    .map("+".join)
    .filter(lambda a: a not in ("sha256", "sha512"))
)
digests = st.one_of(
    st.text("0123456789abcdef", min_size=64, max_size=64).map("sha256:".__add__),
    st.text("0123456789abcdef", min_size=128, max_size=128).map("sha512:".__add__),
    st.builds(
        lambda a, e: f"{a}:{e}",
        _other_algorithm,
        st.text(string.ascii_letters + string.digits + "=_-", min_size=1, max_size=64),
    ),
)
references = st.one_of(tags, digests)
