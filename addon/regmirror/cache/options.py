"""The cache's options: their help text is the user documentation."""

DEFAULT_DIR = "~/.cache/regmirror"


def load_options(loader) -> None:
    loader.add_option(
        "regmirror_cache",
        str,
        DEFAULT_DIR,
        """
        Where the pull-through cache keeps blobs and manifests, by digest, verified
        before they are stored: a directory (with an SQLite index), or
        s3://bucket/prefix, a bucket shared by every replica that names it (links, tags
        and access times as objects beside the content; credentials from the standard
        AWS chain). Empty turns the cache off.
        """,
    )
    loader.add_option(
        "regmirror_s3_endpoint",
        str,
        "",
        """
        URL of the S3-compatible service of an s3:// cache (MinIO, Ceph RGW, R2, ...),
        addressed by path. Empty: AWS S3, in the region of the AWS configuration.
        """,
    )
    loader.add_option(
        "regmirror_s3_redirect",
        bool,
        False,
        """
        With an s3:// cache, answer a hit of a blob of regmirror_blob_redirect_min or more
        with a 307 to a presigned GET of its object (valid 5 minutes), so that its bytes
        go from the storage to the client: for clients that can reach the storage. The
        mirror verified the object when it uploaded it; what the storage sends then, it
        no longer sees. Off: hits stream through the mirror, verified on the way.
        """,
    )
    loader.add_option(
        "regmirror_cache_max_size",
        str,
        "",
        """
        Size limit of the cache: bytes, or a number with a k, m, g or t suffix in
        powers of 1024 ("20g"). Above it the least recently used content is evicted,
        down to 90 %. Empty: for a directory, the smaller of 20 GiB and half the free
        space at start; for an s3:// cache, no limit.
        """,
    )
    loader.add_option(
        "regmirror_tag_ttl",
        int,
        0,
        """
        Seconds a cached tag is served without asking the upstream. After that (and with
        0, always) a pull by tag first sends the upstream a HEAD of the tag, which Docker
        Hub does not count against its pull limit: when the digest is unchanged, the
        manifest comes from the cache; when the tag moved, the new one is fetched.
        """,
    )
    loader.add_option(
        "regmirror_stale_if_error",
        int,
        604800,
        """
        Seconds after its last validation that a cached tag is still served when the
        upstream fails (refused or reset connection, timeout, 5xx, 429): a stale answer,
        said so in the log and the metrics. 0 turns it off. Content by digest never goes
        stale. An upstream 404 drops the tag; 401 and 403 pass through.
        """,
    )
