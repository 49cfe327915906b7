"""The subcommands: each takes the parsed arguments and two consoles (stdout for results,
stderr for progress and messages) and returns the exit status."""

import argparse
import datetime
import json
import os
import sys
import time
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn
from rich.table import Table

from ..observe.describe import human_size
from . import cachedir, graph, warm, warm_metrics
from .cachedir import CliError
from .references import parse_reference
from .registry_client import RegistryClient, Unreachable

OK, PROBLEMS = 0, 1  # PROBLEMS: corrupt files found, images that failed to warm


def ls(args: argparse.Namespace, out: Console, err: Console) -> int:
    with cachedir.opened(args.cache) as (store, index):
        cached = cachedir.snapshot(store, index, {})
    found = [i for i in graph.images(cached) if not args.registry or i.registry == args.registry]
    listed = [graph.describe(cached, i) for i in found]
    if args.json:
        out.print_json(json.dumps([_as_json(item) for item in listed]))
        return OK
    table = Table("IMAGE", "TAG", "DIGEST", "PLATFORMS", "SIZE", "LAST USED", box=None)
    for item in listed:
        i = item.image
        table.add_row(
            f"{i.registry}/{i.repository}",
            i.tag or "<none>",
            i.digest[:19],
            _platforms(item),
            human_size(item.size) + ("" if item.complete else " (partial)"),
            _local(item.last_used),
        )
    out.print(table)
    total = sum(e.size for e in cached.content.values())
    say(
        err,
        f"{len(listed)} images; the cache holds {len(cached.content)} files, {human_size(total)}",
    )
    return OK


def _platforms(item: graph.Listing) -> str:
    if not item.platforms:
        return "1"
    return f"{sum(cached for _, _, cached in item.platforms)} of {len(item.platforms)}"


def _as_json(item: graph.Listing) -> dict[str, Any]:
    i = item.image
    return {
        "registry": i.registry,
        "repository": i.repository,
        "tag": i.tag or None,
        "digest": i.digest,
        "media_type": item.media_type,
        "size": item.size,
        "complete": item.complete,
        "last_used": _utc(item.last_used),
        "validated": _utc(item.validated) if item.validated is not None else None,
        "platforms": [{"platform": p, "digest": d, "cached": c} for p, d, c in item.platforms],
    }


def _utc(t: float) -> str:
    return datetime.datetime.fromtimestamp(t, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _local(t: float) -> str:
    return datetime.datetime.fromtimestamp(t).strftime("%Y-%m-%d %H:%M:%S")


def rm(args: argparse.Namespace, out: Console, err: Console) -> int:
    ref = parse_reference(args.image)
    with cachedir.opened(args.cache) as (store, index):
        removed = cachedir.remove(store, index, ref)
    plan = removed.purge
    names = ", ".join(str(i) for i in removed.images)
    files = f"{count(len(plan.content), 'file')} ({human_size(removed.bytes)})"
    say(out, f"removed {names}: {count(len(plan.tags), 'tag')}, {files}")
    if plan.shared:
        say(
            out,
            f"kept {count(len(plan.shared), 'file')} that other cached images use, "
            f"{len(plan.links)} of them no longer served for {ref.name}",
        )
    return OK


def verify(args: argparse.Namespace, out: Console, err: Console) -> int:
    with cachedir.opened(args.cache) as (store, index), bytes_progress(err) as progress:
        task = progress.add_task("hashing", total=None)

        def started(files: int, size: int) -> None:
            progress.update(task, total=size, description=f"hashing {files} files")

        checked, corrupt = cachedir.verify(
            store, index, args.repair, started, lambda size: progress.advance(task, size)
        )
    for c in corrupt:
        what = "dropped" if args.repair else "corrupt"
        say(out, f"{what}: {c.digest} ({human_size(c.size)}) {c.path}")
    summary = f"{checked} files checked, {len(corrupt)} corrupt"
    if corrupt:
        summary += (
            ", dropped: the mirror fetches them again when asked"
            if args.repair
            else ": `verify --repair` drops them"
        )
    say(out, summary)
    return PROBLEMS if corrupt else OK


def gc(args: argparse.Namespace, out: Console, err: Console) -> int:
    with cachedir.opened(args.cache) as (store, index):
        done = cachedir.collect(store, index, args.max_size)
    before, after = human_size(done.before), human_size(done.after)
    # the limit in the syntax it was given in (powers of 1024), or the default's bytes
    limit = args.max_size or f"{human_size(done.limit)} (the mirror's default)"
    if done.evicted:
        say(out, f"evicted {count(done.evicted, 'file')}: {before} -> {after}, limit {limit}")
    else:
        say(out, f"nothing to evict: {before}, limit {limit}")
    return OK


def warm_images(args: argparse.Namespace, out: Console, err: Console) -> int:
    credentials = None
    if args.user:
        if (password := os.environ.get("REGMIRROR_PASSWORD")) is None:
            raise CliError("--user needs the password in the REGMIRROR_PASSWORD variable")
        credentials = (args.user, password)
    source = "stdin" if args.file == "-" else args.file
    try:
        if args.file == "-":
            text = sys.stdin.read()
        else:
            with open(args.file, encoding="utf-8") as f:
                text = f.read()
    except (OSError, UnicodeDecodeError) as e:
        raise CliError(f"cannot read {source}: {getattr(e, 'strerror', None) or e}") from e
    refs = warm.read_references(text.splitlines(), source)
    if not refs:
        raise CliError(f"no image references in {source}")
    client = RegistryClient(args.mirror, credentials, args.timeout)
    try:
        try:
            client.ping()
        except Unreachable as e:
            raise CliError(str(e)) from e

        def pulled(done: list[warm.Warmed]) -> None:
            if args.metrics_file:
                try:
                    warm_metrics.write(args.metrics_file, done, len(refs), time.time())
                except OSError as e:
                    raise CliError(f"cannot write {args.metrics_file}: {e.strerror or e}") from e

        pulled([])
        with bytes_progress(err) as progress:
            done = warm.warm(client, refs, args.platform or "", progress, pulled)
    finally:
        client.close()
    table = Table("IMAGE", "DIGEST", "PLATFORMS", "BLOBS", "SIZE", "RESULT", box=None)
    for w in done:
        pulled = [w.digest[:19], str(w.platforms or 1), str(w.blobs), human_size(w.size)]
        table.add_row(
            str(w.reference), *(pulled if not w.error else [""] * 4), "failed" if w.error else "ok"
        )
    out.print(table)
    failed = [w for w in done if w.error]
    if not failed:
        return OK
    say(err, f"{len(failed)} of {len(done)} images failed:")
    for w in failed:
        say(err, f"  {w.reference}: {w.error}")
    return PROBLEMS


def count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


def say(console: Console, text: str) -> None:
    """A line as it is: no markup, no highlighting (digests and paths stay plain)."""
    console.print(text, markup=False, highlight=False, soft_wrap=True)


def bytes_progress(console: Console) -> Progress:
    columns = (TextColumn("{task.description}"), BarColumn(), DownloadColumn())
    return Progress(*columns, TransferSpeedColumn(), console=console)
