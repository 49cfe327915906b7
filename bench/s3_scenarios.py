"""The S3 cache and replicas (issue 13 item 8), in the same run as the other sections and
against the same upstream and data (scenarios.setup).

The S3 service is moto's server (tests/support/s3server.py), a stand-in for real S3: one
Python process that keeps objects in memory (spilled to temporary files) and checks no
signature. Every figure that moves bytes through it is bounded by it; it shows neither S3's
latency nor its throughput.

- "hit": one big blob, filled once into each cache on a fresh process (the "_cold" record),
  then hit in every repetition, interleaved: direct; the disk cache through mitmproxy
  ("mirror_cache") and through its data plane ("mirror_dp", a 307 to the mirror's own
  sendfile port); an S3 cache streamed through the mirror ("mirror_s3"); an S3 cache with
  regmirror_s3_redirect ("mirror_s3_redirect": a 307 to a presigned GET that curl follows to
  moto). Each record has the CPU and peak RSS of the serving process and of moto.
- "replicas": N clients (the largest concurrency figure), each with its own source address
  (127.0.1.x) and its own mirror token, pulling N different cached blobs at once: from one
  mirror process alone ("one"), from that process through haproxy ("one_haproxy", a frontend
  pinned to it), and from haproxy balancing over it and a second replica ("replicas").
  haproxy runs docs/haproxy.cfg as it is: `balance source` keeps a client on one replica,
  so the clients need source addresses of their own to be spread. The replicas share one
  bucket ("s3"), then one directory ("dir"); they are filled through replica 1 first.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import time
import unittest.mock
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from tests.support.haproxy import Haproxy
from tests.support.mirror import Mirror
from tests.support.s3server import CREDENTIALS, S3Server

from .blobs import Blob
from .measure import (
    MeasureError,
    Sampler,
    UpstreamCounter,
    _file_sha256,
    curl_binary,
    curl_get,
)
from .plan import Plan, size_label
from .scenarios import Data, Record, _usage_record, rotated
from .stack import CACHE_SIZE_METRIC, CACHED, DATA_PLANE, METRICS_PATH, Stack, _wait, metric_value

logger = logging.getLogger("bench")

S3 = "mirror_s3"
S3_REDIRECT = "mirror_s3_redirect"
CACHES = (CACHED, DATA_PLANE, S3, S3_REDIRECT)  # filled once, then hit
HIT_TARGETS = ("direct", *CACHES)
REPLICA_TARGETS = ("one", "one_haproxy", "replicas")
BACKENDS = ("s3", "dir")
PREFIX = "bench-cache"
SECRET = "bench-replicas-share-this-secret"  # regmirror_redirect_secret of both replicas
CLIENT_NET = "127.0.1."  # client i connects from 127.0.1.(i+1): haproxy balances by source
REPLICA_HEADER = "x-regmirror-replica"  # set by docs/haproxy.cfg: the replica that answered
WRITE_OUT = f"%{{http_code}} %header{{{REPLICA_HEADER}}}\n"  # curl -w, one line per transfer


def run(stack: Stack, data: Data, plan: Plan, token: str, work: Path) -> dict[str, Any]:
    """Both parts, on one moto server; the mirrors get its credentials in their
    environment, as users pass theirs (the standard AWS chain)."""
    with unittest.mock.patch.dict(os.environ, CREDENTIALS), S3Server(work / "s3") as server:
        return {
            "hit": hit(stack, server, data, plan, token, work / "hit"),
            "replicas": replicas(stack, server, data, plan, work / "replicas"),
        }


# ------------------------------------------------------------------------------------------
# one big blob: disk, S3 through the mirror, S3 by presigned redirect
# ------------------------------------------------------------------------------------------


@dataclass
class Front:
    """One way to a cached blob: where the client connects, the process that answers, the
    token it sends, and whether it follows a 307 (curl -L)."""

    url: str
    pid: int
    token: str
    follow: bool = False


def s3_options(stack: Stack, server: S3Server, **extra: str) -> dict[str, str]:
    """The stack's mirror options with a cache in a new bucket of `server`."""
    return {
        **stack.mirror_options,
        "regmirror_cache": f"s3://{server.bucket()}/{PREFIX}",
        "regmirror_s3_endpoint": server.url,
        **extra,
    }


def mirror_token(url: str, stack: Stack, repos: Sequence[str], source: str = "") -> tuple[str, str]:
    """An anonymous pull token for `repos` from the mirror realm at `url` (from `source`),
    and the replica that handed it out (haproxy's header; "" without haproxy)."""
    params = [("service", stack.token_server.service)]
    params += [("scope", f"repository:{r}:pull") for r in repos]
    transport = httpx.HTTPTransport(local_address=source) if source else None
    with httpx.Client(transport=transport, timeout=30) as client:
        r = client.get(f"{url}/v2/auth", params=params)
    r.raise_for_status()
    return r.json()["token"], r.headers.get(REPLICA_HEADER, "")


def committed(mirror: Mirror, size: int) -> float:
    """Seconds until `mirror` holds at least `size` bytes (its cache size metric)."""

    def held() -> bool:
        r = httpx.get(mirror.url + METRICS_PATH, timeout=10)
        r.raise_for_status()
        return (metric_value(r.text, CACHE_SIZE_METRIC) or 0) >= size

    return _wait(held, f"{mirror.name}: {size} bytes committed")


def _usage(sampler: Sampler, names: Sequence[str], size: int) -> Record:
    """CPU (and per GiB moved) and peak RSS of each of `names` (Sampler's)."""
    out: Record = {}
    for name in names:
        usage = sampler.usage[name]
        out[f"{name}_cpu_s"] = usage.cpu_seconds
        out[f"{name}_cpu_s_per_gib"] = usage.cpu_seconds / (size / (1 << 30))
        out[f"{name}_peak_rss"] = usage.peak_rss
    return out


def hit(
    stack: Stack, server: S3Server, data: Data, plan: Plan, token: str, work: Path
) -> dict[str, Any]:
    """The large blob: each of CACHES filled once on a fresh process, then hit plan.reps
    times, interleaved with direct (module docstring)."""
    image = data.images[plan.big]
    path = f"/v2/{image.repo}/blobs/{image.layers[0].digest}"
    repos = [image.repo]
    assert server.proc is not None
    s3_pid = server.proc.pid
    stack.restart(CACHED)
    stack.restart(DATA_PLANE)
    started: list[Mirror] = []
    try:
        s3 = Mirror(work / S3, stack.upstream.url, s3_options(stack, server), name=S3)
        started.append(s3)
        s3.start()
        redirecting = s3_options(
            stack,
            server,
            regmirror_s3_redirect="true",
            regmirror_blob_redirect_min=str(plan.redirect_min),
        )
        s3r = Mirror(work / S3_REDIRECT, stack.upstream.url, redirecting, name=S3_REDIRECT)
        started.append(s3r)
        s3r.start()
        fronts = {
            "direct": Front(stack.url("direct"), stack.upstream_pid, token),
            CACHED: Front(stack.url(CACHED), stack.pid(CACHED), stack.cached_token(CACHED)),
            DATA_PLANE: Front(
                stack.url(DATA_PLANE),
                stack.pid(DATA_PLANE),
                stack.cached_token(DATA_PLANE),
                follow=True,
            ),
            S3: Front(s3.url, s3.pid, mirror_token(s3.url, stack, repos)[0]),
            S3_REDIRECT: Front(s3r.url, s3r.pid, mirror_token(s3r.url, stack, repos)[0], True),
        }
        counter = UpstreamCounter(stack.upstream, stack.token_server)

        def measure(target: str) -> Record:
            front = fronts[target]
            counter.mark()
            pids = {"front": front.pid, "upstream": stack.upstream_pid, "s3": s3_pid}
            with Sampler(pids) as sampler:
                t = curl_get(
                    front.url + path,
                    {"Authorization": f"Bearer {front.token}"},
                    plan.big,
                    follow=front.follow,
                )
            record = {**_usage_record(t.seconds, plan.big, sampler), "redirects": t.redirects}
            return {**record, **_usage(sampler, ["s3"], plan.big), "upstream": counter.requests()}

        logger.info("S3: blob %s, fills", size_label(plan.big))
        out: dict[str, list[Record]] = {"direct": []}
        waits: dict[str, Callable[[], float]] = {
            CACHED: lambda: stack.wait_committed(plan.big, CACHED),
            DATA_PLANE: lambda: stack.wait_committed(plan.big, DATA_PLANE),
            S3: lambda: committed(s3, plan.big),
            S3_REDIRECT: lambda: committed(s3r, plan.big),
        }
        for target in CACHES:
            record = measure(target)
            record["store_wait_s"] = waits[target]()
            out[f"{target}_cold"], out[f"{target}_warm"] = [record], []
        logger.info("S3: blob %s, hits", size_label(plan.big))
        for rep in range(plan.reps):
            for target in rotated(HIT_TARGETS, rep):
                out[target if target == "direct" else f"{target}_warm"].append(measure(target))
    finally:
        for mirror in reversed(started):
            mirror.stop()
    logger.info(
        "S3 hit %s: %s",
        size_label(plan.big),
        ", ".join(f"{t} {r[-1]['mb_per_s']:.0f} MB/s" for t, r in out.items() if r),
    )
    return {size_label(plan.big): out}


# ------------------------------------------------------------------------------------------
# replicas behind haproxy against one process
# ------------------------------------------------------------------------------------------


@dataclass
class Client:
    """One client of `clients()`: its source address, token and blob."""

    source: str
    token: str
    blob: Blob
    replica: str  # the replica that handed out its token (haproxy's header), if any


def clients(
    transfers: Sequence[tuple[str, str, str]], out_dir: Path, digests: Sequence[str]
) -> tuple[float, Counter[str]]:
    """Each (url, token, source address) its own client, all at once: one curl --parallel
    with a --next group each (measure.curl_parallel sends one set of headers from one
    address), one connection each, each to its own file; then every file's sha256 is
    checked against `digests` (outside the timed part). Seconds, and how many transfers
    each replica answered (haproxy's header)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    args = [
        curl_binary(),
        "--parallel",
        "--parallel-immediate",
        "--parallel-max",
        str(len(transfers)),
    ]
    files = [out_dir / f"{i}.blob" for i in range(len(transfers))]
    for i, ((url, token, source), path) in enumerate(zip(transfers, files, strict=True)):
        args += ["--next"] if i else []
        args += ["-sS", "--interface", source, "-H", f"Authorization: Bearer {token}"]
        args += ["-w", WRITE_OUT, "-o", str(path), url]
    start = time.perf_counter()
    res = subprocess.run(args, capture_output=True, text=True, timeout=300)
    seconds = time.perf_counter() - start
    lines = [line.split() for line in res.stdout.splitlines() if line.strip()]
    statuses = [line[0] for line in lines]
    if res.returncode != 0 or statuses != ["200"] * len(transfers):
        raise MeasureError(f"curl --parallel: exit {res.returncode}, {statuses}; {res.stderr}")
    for path, digest in zip(files, digests, strict=True):
        if (got := "sha256:" + _file_sha256(path)) != digest:
            raise MeasureError(f"{path}: digest {got}, expected {digest}")
    shutil.rmtree(out_dir)
    return seconds, Counter(line[1] if len(line) > 1 else "" for line in lines)


@contextmanager
def replica_set(
    stack: Stack, options: dict[str, str], work: Path
) -> Iterator[tuple[Haproxy, list[Mirror]]]:
    """Two mirrors with `options` and one secret behind haproxy (docs/haproxy.cfg), started
    one after the other (README: Known limits of a shared directory), stopped by PID."""
    haproxy = Haproxy(work / "haproxy")
    mirrors: list[Mirror] = []
    try:
        for i in (1, 2):
            shared = {**options, "regmirror_redirect_secret": SECRET}
            mirror = Mirror(work / f"replica{i}", stack.upstream.url, shared, name=f"replica{i}")
            mirrors.append(mirror)
            mirror.start()
        haproxy.start([m.host for m in mirrors])
        yield haproxy, mirrors
    finally:
        haproxy.stop()
        for mirror in reversed(mirrors):
            mirror.stop()


def replicas(stack: Stack, server: S3Server, data: Data, plan: Plan, work: Path) -> dict[str, Any]:
    """The largest concurrency figure's clients and blobs, on replicas sharing each of
    BACKENDS in turn (module docstring)."""
    n = max(plan.concurrency)
    blobs = data.many[:n]
    out: dict[str, Any] = {}
    for backend in BACKENDS:
        if backend == "s3":
            options = s3_options(stack, server)
        else:
            options = {**stack.mirror_options, "regmirror_cache": str(work / "dir" / "cache")}
        logger.info("replicas on %s: %d clients", backend, n)
        with replica_set(stack, options, work / backend) as (haproxy, mirrors):
            out[backend] = _replica_runs(
                stack, server, data, plan, blobs, haproxy, mirrors, work / backend
            )
    return {str(n): out}


def _replica_runs(
    stack: Stack,
    server: S3Server,
    data: Data,
    plan: Plan,
    blobs: Sequence[Blob],
    haproxy: Haproxy,
    mirrors: Sequence[Mirror],
    work: Path,
) -> dict[str, list[Record]]:
    """Filled once through replica 1 alone ("fill"), then each of REPLICA_TARGETS in every
    repetition, interleaved."""
    assert haproxy.proc is not None and server.proc is not None
    replica1, replica2 = mirrors
    urls = {
        "one": replica1.url,
        "one_haproxy": f"http://{haproxy.pinned[0]}",
        "replicas": haproxy.url,
        "fill": replica1.url,
    }
    repos = [data.many_repo]
    crowd: dict[str, list[Client]] = {}
    for target, url in urls.items():
        crowd[target] = []
        for i, blob in enumerate(blobs):
            source = f"{CLIENT_NET}{i + 1}"
            client_token, replica = mirror_token(url, stack, repos, source)
            crowd[target].append(Client(source, client_token, blob, replica))
    pids = {
        "replica1": replica1.pid,
        "replica2": replica2.pid,
        "haproxy": haproxy.proc.pid,
        "s3": server.proc.pid,
        "upstream": stack.upstream_pid,
    }
    counter = UpstreamCounter(stack.upstream, stack.token_server)
    size = sum(b.size for b in blobs)

    def measure(target: str, rep: int) -> Record:
        group = crowd[target]
        transfers = [
            (f"{urls[target]}/v2/{data.many_repo}/blobs/{c.blob.digest}", c.token, c.source)
            for c in group
        ]
        counter.mark()
        with Sampler(pids) as sampler:
            seconds, served = clients(
                transfers, work / f"{target}-{rep}", [c.blob.digest for c in group]
            )
        return {
            "seconds": seconds,
            "bytes": size,
            "mb_per_s": size / seconds / 1e6,
            "clients": len(group),
            "verified": len(group),
            "served_by": dict(served),
            "tokens_by": dict(Counter(c.replica for c in group)),
            **_usage(sampler, list(pids), size),
            "upstream": counter.requests(),
        }

    fill = measure("fill", -1)
    fill["store_wait_s"] = committed(replica1, size)
    out: dict[str, list[Record]] = {"fill": [fill], **{t: [] for t in REPLICA_TARGETS}}
    for rep in range(plan.slow_reps):
        for target in rotated(REPLICA_TARGETS, rep):
            out[target].append(measure(target, rep))
    logger.info(
        "replicas: %s", ", ".join(f"{t} {out[t][-1]['mb_per_s']:.0f} MB/s" for t in REPLICA_TARGETS)
    )
    return out
