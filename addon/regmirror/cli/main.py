"""`./run.sh cache SUBCOMMAND`: the cache of a mirror, worked on while the mirror runs.

Exit status: 0 done; 1 done, and found corrupt files (verify) or images that failed
(warm); 2 nothing done: a usage error, a bad reference, no cache at --cache, a mirror that
cannot be reached, an index that is busy or damaged."""

import argparse
import sqlite3
import sys
from pathlib import Path

from rich.console import Console

from ..cache.options import DEFAULT_DIR
from . import commands
from .cachedir import CliError
from .references import BadReference
from .warm import PLATFORM

USAGE_ERROR = 2
DEFAULT_MIRROR = "http://127.0.0.1:5000"
PIPE_WIDTH = 500


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(
        prog="run.sh cache",
        description="Work on the cache of a regmirror mirror, also while it runs: list, "
        "purge, verify, evict, pre-warm. References are read as docker reads them: "
        "nginx:1 is docker.io/library/nginx:1.",
        epilog="Exit status: 0 done; 1 corrupt files found (verify) or images that failed "
        "(warm); 2 nothing done (usage, bad reference, no cache, mirror unreachable).",
    )
    cache = argparse.ArgumentParser(add_help=False)
    cache.add_argument(
        "--cache",
        metavar="DIR",
        default=DEFAULT_DIR,
        help=f"the cache directory, the mirror's regmirror_cache (default {DEFAULT_DIR})",
    )
    sub = top.add_subparsers(dest="command", required=True, metavar="SUBCOMMAND")

    ls = sub.add_parser(
        "ls",
        parents=[cache],
        help="list the cached images",
        description="List the cached images: every tag, and every manifest cached without "
        "one, with its size (the manifest and the configs, layers and, for an index, "
        "platform manifests it references that are cached; 'partial' when some are not) "
        "and its last use.",
    )
    ls.add_argument("--registry", metavar="R", help="only this registry (docker.io, ghcr.io, ...)")
    ls.add_argument("--json", action="store_true", help="print JSON instead of a table")
    ls.set_defaults(run=commands.ls)

    rm = sub.add_parser(
        "rm",
        parents=[cache],
        help="purge an image",
        description="Purge an image: its tag (or, by digest, the manifest and the tags of the "
        "repository that point at it), and every manifest and blob it references that no "
        "other cached image references. What other images share stays cached, but is no "
        "longer served for this repository. The next pull fetches it upstream again.",
    )
    rm.add_argument("image", metavar="IMAGE[:TAG|@DIGEST]", help="the image (tag default: latest)")
    rm.set_defaults(run=commands.rm)

    verify = sub.add_parser(
        "verify",
        parents=[cache],
        help="re-hash every cached file",
        description="Re-hash every cached file and report those whose bytes no longer match "
        "their digest (exit status 1 when there are any). The mirror hashes a file again "
        "only when its size or time changed: this finds the rest (bit rot).",
    )
    verify.add_argument(
        "--repair",
        action="store_true",
        help="drop the corrupt files (the index row, then the file)",
    )
    verify.set_defaults(run=commands.verify)

    gc = sub.add_parser(
        "gc",
        parents=[cache],
        help="apply the size limit now",
        description="Evict the least recently used content down to 90 %% of the size limit, "
        "as the mirror does when a fill takes the cache above it.",
    )
    gc.add_argument(
        "--max-size",
        metavar="SIZE",
        default="",
        help="bytes, or k/m/g/t (powers of 1024) as regmirror_cache_max_size; default: the "
        "mirror's default, the smaller of 20 GiB and half the free space",
    )
    gc.set_defaults(run=commands.gc)

    warm = sub.add_parser(
        "warm",
        help="pull images into the cache through the mirror",
        description="Pull each image listed in FILE (one reference per line; # comments and "
        "blank lines skipped; - reads stdin) through the running mirror, as a client would, "
        "so that it is cached: the manifest, every platform's manifest of an index (or one "
        "platform's), configs and layers, each checked against its digest.",
    )
    warm.add_argument("file", metavar="FILE|-", help="the list of image references")
    warm.add_argument(
        "--mirror",
        metavar="URL",
        default=DEFAULT_MIRROR,
        help=f"the mirror (default {DEFAULT_MIRROR})",
    )
    warm.add_argument(
        "--platform",
        metavar="OS/ARCH[/VARIANT]",
        type=_platform,
        help="only this platform of an index (default: every platform)",
    )
    warm.add_argument(
        "--user",
        metavar="NAME",
        help="log in to the mirror (client authentication) as NAME, with the password in "
        "the REGMIRROR_PASSWORD environment variable",
    )
    warm.add_argument(
        "--timeout", metavar="SECONDS", type=float, default=60.0, help="per request (default 60)"
    )
    warm.add_argument(
        "--metrics-file",
        metavar="PATH",
        type=Path,
        help="write the run's progress after every image to PATH in Prometheus' text format "
        "(for node_exporter's textfile collector): regmirror_warm_images{result}, "
        "regmirror_warm_bytes",
    )
    warm.set_defaults(run=commands.warm_images)
    return top


def _platform(text: str) -> str:
    if not PLATFORM.fullmatch(text):
        raise argparse.ArgumentTypeError(f"{text!r} is not os/arch[/variant], e.g. linux/arm64")
    return text


def console(stderr: bool = False) -> Console:
    """Rich's console; into a pipe or a file, lines as long as they are (no wrapping at 80
    columns), so that they can be read by grep and scripts."""
    c = Console(stderr=stderr)
    return c if c.is_terminal else Console(stderr=stderr, width=PIPE_WIDTH)


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    out, err = console(), console(stderr=True)
    try:
        return args.run(args, out, err)
    except (CliError, BadReference) as e:
        print(f"regmirror cache {args.command}: {e}", file=sys.stderr)
    except sqlite3.Error as e:  # locked beyond the busy timeout, or damaged
        print(
            f"regmirror cache {args.command}: the cache index cannot be used: {e}", file=sys.stderr
        )
    except KeyboardInterrupt:
        return 130
    return USAGE_ERROR
