"""The cache's options: their help text is the user documentation."""

DEFAULT_DIR = "~/.cache/regmirror"


def load_options(loader) -> None:
    loader.add_option(
        "regmirror_cache",
        str,
        DEFAULT_DIR,
        """
        Directory of the pull-through cache: blobs and manifests by digest, verified
        before they are stored, and an SQLite index. Empty turns the cache off.
        """,
    )
    loader.add_option(
        "regmirror_cache_max_size",
        str,
        "",
        """
        Size limit of the cache: bytes, or a number with a k, m, g or t suffix in
        powers of 1024 ("20g"). Above it the least recently used content is evicted,
        down to 90 %. Empty: the smaller of 20 GiB and half the free space at start.
        """,
    )
