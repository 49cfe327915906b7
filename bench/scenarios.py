"""The benchmark sections. Each measures direct, mirror and peer interleaved (the order
rotates with every repetition) and returns plain data for the JSON report.

The peer is distribution's pull-through cache: "peer_cold" is a fresh process with empty
storage (it must fetch from the upstream, as the pass-through mirror always does),
"peer_warm" the same process right after, serving from its own storage. The caching mirror
("mirror_cache", issue 10) is measured the same way: "mirror_cache_cold" is a fresh process
with an empty cache directory (it fills), "mirror_cache_warm" the same process right after.
Both store what a cold measurement fetched only after their client got its last byte, so
the warm measurement waits until they have ("store_wait_s"); without that wait it may be
served from the upstream again. For these, the requests the upstream saw are recorded with
each measurement ("upstream", by measure.request_kind; a cold one's include the peer's own
fetch for its storage).

The data plane ("mirror_dp", issue 11) is measured warm only: a caching mirror with
`regmirror_blob_listen` on, restarted empty once per section and filled through its API port
("mirror_dp_cold", one record: a miss is never redirected), then measured "mirror_dp_warm" in
every repetition: the blob GET gets a 307 that curl (-L) and skopeo follow to the data plane.
Each of its records counts the transfers the data plane logged ("data_plane_transfers").
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from tests.support.images import build_two_platform, push
from tests.support.load import hold_connections
from tests.support.tokenserver import PUSHER_CREDS

from .blobs import Blob, Image, Pusher
from .measure import (
    GiB,
    Sampler,
    Transfer,
    UpstreamCounter,
    curl_get,
    curl_parallel,
    latencies,
    median,
    percentile,
    round_trip_kinds,
    rss,
    skopeo_pull,
)
from .plan import Plan, size_label
from .stack import CACHED, CACHING, DATA_PLANE, TARGETS, Stack

logger = logging.getLogger("bench")

Record = dict[str, Any]
COLD_WARM = ("peer", "peer_tls", CACHED)  # measured on a fresh process, then again
WARM_ONLY = (DATA_PLANE,)  # filled once on a fresh process, then measured warm every time
SERIES_POINTS = 400  # RSS samples kept for the chart
IDLE_SOURCE = "127.0.0.2"  # idle clients' address: the mirror's per-client limit spares the pulls
SETTLE = 0.5  # seconds for a server to finish setting up what it accepted


@dataclass
class Data:
    """What setup() pushed to the upstream."""

    images: dict[int, Image]  # one single-layer image per blob size: bench/blob-<size>:1
    many_repo: str
    many: list[Blob]  # blobs for the concurrency section
    multi: list[str]  # multi-arch images for cold pulls, one per repetition
    multi_blobs: dict[str, list[str]]  # digests of each one's configs and layers
    # bytes a caching mirror stores of each (manifests, configs, layers; the index comes by
    # tag) when it pulled the ones before it in `multi`: their arch layers are the same bytes
    multi_size: dict[str, int]
    flight_repo: str
    flight: Blob  # one blob that many clients ask for at once (single_flight)

    def repos(self) -> list[str]:
        images = (i.repo for i in self.images.values())
        return [*images, self.many_repo, *self.multi, self.flight_repo]


def rotated(targets: Sequence[str], rep: int) -> list[str]:
    k = rep % len(targets)
    return [*targets[k:], *targets[:k]]


def setup(stack: Stack, plan: Plan, work: Path) -> Data:
    repos = [f"bench/blob-{size_label(s)}" for s in plan.sizes]
    many_repo, flight_repo = "bench/many", "bench/flight"
    images: dict[int, Image] = {}
    token = stack.push_token([*repos, many_repo, flight_repo])
    with Pusher(stack.upstream.url, token) as pusher:
        for seed, (size, repo) in enumerate(zip(plan.sizes, repos, strict=True), start=1):
            layer = pusher.blob(repo, size, seed)
            images[size] = pusher.image(repo, "1", [layer])
        many = [
            pusher.blob(many_repo, plan.concurrent_blob, 1000 + i)
            for i in range(max(plan.concurrency))
        ]
        flight = pusher.blob(flight_repo, plan.flight_blob, 2000)
    multi, multi_blobs, multi_size, seen = [], {}, {}, set()
    for i in range(plan.pull_reps):
        repo = f"bench/multi-{i}"
        image = build_two_platform(work / "layouts" / repo, f"multi{i}")
        push(image, f"{stack.upstream.host}/{repo}:1", work / "push", creds=PUSHER_CREDS)
        multi.append(repo)
        content = {
            b.digest: b.size
            for p in image.platforms.values()
            for b in (p.manifest, p.config, *p.layers)
        }
        multi_size[repo] = sum(size for digest, size in content.items() if digest not in seen)
        seen |= content.keys()
        platforms = image.platforms.values()
        multi_blobs[repo] = [b.digest for p in platforms for b in (p.config, *p.layers)]
    return Data(images, many_repo, many, multi, multi_blobs, multi_size, flight_repo, flight)


# ------------------------------------------------------------------------------------------
# blobs: curl and skopeo
# ------------------------------------------------------------------------------------------


def _each_target(
    stack: Stack,
    reps: int,
    measure: Callable[[str, int], Record],
    targets: Sequence[str] = TARGETS,
    stored: tuple[str, Sequence[Blob]] | None = None,
    counted: Sequence[str] = (),
) -> dict[str, list[Record]]:
    """measure(target, rep) for every target and repetition, interleaved; COLD_WARM targets
    twice, on a fresh process (cold), then again (warm), with the upstream's requests of
    each ("upstream"). Between the two, until the cold one has stored the blobs of `stored`
    (repository, blobs), as "store_wait_s" (_wait_stored); its count ends after that. The
    upstream's requests are also counted for the `counted` targets. WARM_ONLY targets: one
    cold measurement on a fresh process before the first repetition, then warm ones."""
    counter = UpstreamCounter(stack.upstream, stack.token_server)
    out: dict[str, list[Record]] = {}
    for t in targets:
        split = t in COLD_WARM or t in WARM_ONLY
        out.update({f"{t}_cold": [], f"{t}_warm": []} if split else {t: []})

    def counting(target: str, rep: int, cold: bool = False) -> Record:
        counter.mark()
        served = stack.data_plane_transfers() if target == DATA_PLANE else 0
        record = measure(target, rep)
        if target == DATA_PLANE:
            record["data_plane_transfers"] = stack.data_plane_transfers() - served
        if cold and stored:
            record["store_wait_s"] = _wait_stored(stack, target, *stored)
        return {**record, "upstream": counter.requests()}

    for target in targets:
        if target in WARM_ONLY:
            stack.restart(target)
            out[f"{target}_cold"].append(counting(target, -1, cold=True))
    for rep in range(reps):
        for target in rotated(targets, rep):
            if target in COLD_WARM:
                stack.restart(target)
                out[f"{target}_cold"].append(counting(target, rep, cold=True))
                out[f"{target}_warm"].append(counting(target, rep))
            elif target in WARM_ONLY:
                out[f"{target}_warm"].append(counting(target, rep))
            elif target in counted:
                out[target].append(counting(target, rep))
            else:
                out[target].append(measure(target, rep))
    return out


def _wait_stored(stack: Stack, target: str, repo: str, blobs: Sequence[Blob]) -> float:
    """Seconds until a fresh `target` has stored `blobs` fetched through `repo`."""
    if target in CACHING:
        return stack.wait_committed(sum(b.size for b in blobs), target)  # its cache was empty
    return stack.wait_peer_stored(target, repo, [b.digest for b in blobs])


def _auth(stack: Stack, target: str, token: str) -> dict[str, str]:
    """The upstream's anonymous token, or for a caching mirror one from its own realm
    (Stack.cached_token)."""
    if target in CACHING:
        token = stack.cached_token(target)
    return {"Authorization": f"Bearer {token}"}


def _base_url(stack: Stack, target: str) -> tuple[str, int]:
    """URL and serving PID of a target; "mirror_tls" is the mirror over TLS (mitmproxy
    answers TLS on the same port with a certificate of its own CA)."""
    if target == "mirror_tls":
        return f"https://{stack.host('mirror')}", stack.pid("mirror")
    return stack.url(target), stack.pid(target)


def _usage_record(seconds: float, size: int, sampler: Sampler) -> Record:
    front, upstream = sampler.usage["front"], sampler.usage["upstream"]
    return {
        "seconds": seconds,
        "bytes": size,
        "mb_per_s": size / seconds / 1e6,
        "front_cpu_s": front.cpu_seconds,
        "front_cpu_s_per_gib": front.cpu_seconds / (size / GiB),
        "upstream_cpu_s": upstream.cpu_seconds,
        "front_peak_rss": front.peak_rss,
        "front_sampled_peak_rss": front.sampled_peak_rss,
    }


def _downsample(series: list[tuple[float, int]]) -> list[tuple[float, int]]:
    step = max(1, len(series) // SERIES_POINTS)
    return series[::step]


def blob_curl(stack: Stack, data: Data, plan: Plan, token: str) -> dict[str, Any]:
    """GET each blob size with curl to /dev/null; CPU and peak RSS of the serving process.
    The large blob also as "mirror_tls": through the mirror over TLS."""
    out: dict[str, Any] = {}
    for size in plan.sizes:
        image = data.images[size]
        layer = image.layers[0]
        path = f"/v2/{image.repo}/blobs/{layer.digest}"

        def measure(target: str, rep: int, path: str = path, size: int = size) -> Record:
            keep = target == "mirror" and rep == 0 and size == plan.big
            base, pid = _base_url(stack, target)
            pids = {"front": pid, "upstream": stack.upstream_pid}
            auth = _auth(stack, target, token)
            with Sampler(pids, keep_series=keep) as sampler:
                t = curl_get(base + path, auth, size, follow=target == DATA_PLANE)
            record = {**_usage_record(t.seconds, size, sampler), "redirects": t.redirects}
            if keep:
                record["front_rss_series"] = _downsample(sampler.usage["front"].series)
            return record

        logger.info("blob %s with curl", size_label(size))
        # The large blob also goes through the mirror over TLS, as skopeo and docker use it,
        # through the caching mirror (a fill, then a hit), and from the data plane (hits).
        big = size == plan.big
        over_tls = ("mirror_tls",) if big and stack.mirror_speaks_tls else ()
        targets = (*TARGETS, *over_tls, *((CACHED, DATA_PLANE) if big else ()))
        stored = (image.repo, image.layers)
        out[size_label(size)] = _each_target(stack, plan.reps, measure, targets, stored)
    return out


def blob_skopeo(stack: Stack, data: Data, plan: Plan, work: Path) -> dict[str, Any]:
    """`skopeo copy docker://... dir:` of the image holding the large blob. skopeo speaks
    TLS to the mirror (mitmproxy answers TLS on its port) but plain HTTP to distribution, so
    a peer serving TLS ("peer_tls") is measured too."""
    image = data.images[plan.big]

    def measure(target: str, rep: int) -> Record:
        pids = {"front": stack.pid(target), "upstream": stack.upstream_pid}
        with Sampler(pids) as sampler:
            pull = skopeo_pull(
                work / f"skopeo-{target}-{rep}", f"{stack.host(target)}/{image.repo}:1"
            )
        return {
            **_usage_record(pull.seconds, plan.big, sampler),
            "client_cpu_s": pull.client_cpu_s,
        }

    logger.info("blob %s with skopeo", size_label(plan.big))
    targets = (*TARGETS, "peer_tls", CACHED, DATA_PLANE)
    stored = (image.repo, (image.config, *image.layers))
    return {size_label(plan.big): _each_target(stack, plan.slow_reps, measure, targets, stored)}


# ------------------------------------------------------------------------------------------
# small requests
# ------------------------------------------------------------------------------------------


def small_requests(stack: Stack, data: Data, plan: Plan, token: str) -> dict[str, Any]:
    """Manifest HEAD by tag and GET by digest over one keep-alive connection per target,
    with a token that is already valid. A slow target gets fewer requests (small_seconds)."""
    image = data.images[plan.big]
    kinds = {
        "manifest_head": ("HEAD", f"/v2/{image.repo}/manifests/1"),
        "manifest_get_digest": ("GET", f"/v2/{image.repo}/manifests/{image.manifest.digest}"),
    }
    headers = {"Authorization": f"Bearer {token}", "Accept": image.manifest.media_type}
    clients = {t: httpx.Client(base_url=stack.url(t), headers=headers, timeout=30) for t in TARGETS}
    out: dict[str, Any] = {}
    try:
        for kind, (method, path) in kinds.items():
            samples: dict[str, list[float]] = {t: [] for t in TARGETS}
            rep_p50: dict[str, list[float]] = {t: [] for t in TARGETS}
            for target in TARGETS:
                latencies(clients[target], method, path, plan.warmup_requests)
            for rep in range(plan.small_reps):
                for target in rotated(TARGETS, rep):
                    got = latencies(
                        clients[target], method, path, plan.small_requests, plan.small_seconds
                    )
                    samples[target] += got
                    rep_p50[target].append(median(got) * 1000)
            out[kind] = {
                t: {
                    "n": len(samples[t]),
                    "p50_ms": percentile(samples[t], 50) * 1000,
                    "p99_ms": percentile(samples[t], 99) * 1000,
                    "rep_p50_ms": rep_p50[t],
                }
                for t in TARGETS
            }
            logger.info(
                "%s p50: %s",
                kind,
                ", ".join(f"{t} {out[kind][t]['p50_ms']:.2f} ms" for t in TARGETS),
            )
    finally:
        for client in clients.values():
            client.close()
    out[CACHED_HEAD] = _cached_heads(stack, image, plan)
    return out


CACHED_HEAD = "manifest_head_digest_cached"


def _cached_heads(stack: Stack, image: Image, plan: Plan) -> dict[str, Any]:
    """Manifest HEAD by digest, direct and from the caching mirror's cache (its GET before
    cached it), interleaved like the others: what a hit costs on the API port."""
    path = f"/v2/{image.repo}/manifests/{image.manifest.digest}"
    accept = {"Accept": image.manifest.media_type}
    targets = ("direct", CACHED)
    tokens = {"direct": stack.pull_token(stack.repos), CACHED: stack.cached_token(CACHED)}
    clients = {
        t: httpx.Client(
            base_url=stack.url(t),
            headers={**accept, "Authorization": f"Bearer {tokens[t]}"},
            timeout=30,
        )
        for t in targets
    }
    samples: dict[str, list[float]] = {t: [] for t in targets}
    try:
        clients[CACHED].get(path).raise_for_status()
        for target in targets:
            latencies(clients[target], "HEAD", path, plan.warmup_requests)
        for rep in range(plan.small_reps):
            for target in rotated(targets, rep):
                samples[target] += latencies(
                    clients[target], "HEAD", path, plan.small_requests, plan.small_seconds
                )
    finally:
        for client in clients.values():
            client.close()
    out = {
        t: {
            "n": len(samples[t]),
            "p50_ms": percentile(samples[t], 50) * 1000,
            "p99_ms": percentile(samples[t], 99) * 1000,
        }
        for t in targets
    }
    logger.info(
        "manifest HEAD by digest from the cache p50: direct %.2f ms, %s %.2f ms",
        out["direct"]["p50_ms"], CACHED, out[CACHED]["p50_ms"],
    )  # fmt: skip
    return out


# ------------------------------------------------------------------------------------------
# cold pulls of a multi-arch image
# ------------------------------------------------------------------------------------------


def cold_pulls(stack: Stack, data: Data, work: Path) -> dict[str, list[Record]]:
    """skopeo copy --all of a multi-arch image none of them served before, and the round
    trips the upstream (registry and token service) saw for it ("round_trips" by kind,
    "requests" by measure.request_kind). For "direct" those are the client's own requests.
    Then another client pulls the same image again through the mirror, the caching mirror
    and the peer ("mirror_again", "mirror_cache_again", "peer_again"), once the caches have
    stored what the first pull fetched ("store_wait_s"): what their caches save."""
    counter = UpstreamCounter(stack.upstream, stack.token_server)
    targets = (*TARGETS, CACHED)
    again = ("mirror", CACHED, "peer")
    out: dict[str, list[Record]] = {t: [] for t in (*targets, *(f"{t}_again" for t in again))}

    def pull(target: str, repo: str, rep: int, key: str) -> None:
        counter.mark()
        ref = f"{stack.host(target)}/{repo}:1"
        held = stack.cache_size() if key == CACHED else 0
        result = skopeo_pull(work / f"pull-{key}-{rep}", ref, multi_arch=True)
        record: Record = {"seconds": result.seconds, "client_cpu_s": result.client_cpu_s}
        if key == CACHED:
            record["store_wait_s"] = stack.wait_committed(held + data.multi_size[repo])
        elif key == "peer":
            record["store_wait_s"] = stack.wait_peer_stored(key, repo, data.multi_blobs[repo])
        requests = counter.requests()
        counts = round_trip_kinds(requests)
        record.update(round_trips=counts, requests=requests, total=sum(counts.values()))
        out[key].append(record)

    for rep, repo in enumerate(data.multi):
        for target in rotated(targets, rep):
            pull(target, repo, rep, target)
        for target in again:
            pull(target, repo, rep, f"{target}_again")
    logger.info(
        "cold pull round trips: %s",
        ", ".join(f"{t} {out[t][0]['total']}" for t in out),
    )
    return out


# ------------------------------------------------------------------------------------------
# concurrency
# ------------------------------------------------------------------------------------------


def _parallel_pulls(
    stack: Stack, data: Data, target: str, n: int, token: str, out_dir: Path
) -> Record:
    """n clients (one connection each) pulling n different blobs from `target` at once; every
    digest is checked after the transfer."""
    blobs = data.many[:n]
    urls = [f"{stack.url(target)}/v2/{data.many_repo}/blobs/{b.digest}" for b in blobs]
    pids = {"front": stack.pid(target), "upstream": stack.upstream_pid}
    auth, follow = _auth(stack, target, token), target == DATA_PLANE
    with Sampler(pids) as sampler:
        t: Transfer = curl_parallel(urls, auth, out_dir, [b.digest for b in blobs], follow)
    record = _usage_record(t.seconds, t.size, sampler)
    return {**record, "clients": n, "verified": n, "redirects": t.redirects}


def concurrency(stack: Stack, data: Data, plan: Plan, token: str, work: Path) -> dict[str, Any]:
    """N clients pulling N different blobs at once (_parallel_pulls), for each N; for the
    largest, also from the data plane, and then every cold target waits until it has stored
    the blobs before its warm measurement."""
    out: dict[str, Any] = {}
    for n in plan.concurrency:

        def measure(target: str, rep: int, n: int = n) -> Record:
            return _parallel_pulls(stack, data, target, n, token, work / f"conc-{n}-{target}-{rep}")

        logger.info("%d clients", n)
        if n == max(plan.concurrency):
            stored = (data.many_repo, data.many[:n])
            targets = (*TARGETS, DATA_PLANE)
            out[str(n)] = _each_target(stack, plan.slow_reps, measure, targets, stored)
        else:
            out[str(n)] = _each_target(stack, plan.slow_reps, measure)
    return out


def single_flight(stack: Stack, data: Data, plan: Plan, token: str, work: Path) -> dict[str, Any]:
    """plan.flight_clients clients (curl --parallel, one connection each, started together)
    asking for one blob none of them served before, then again (warm): wall time, and the
    upstream's requests (its blob GETs: 1 is single flight, one per client is none). For
    "direct" those are the clients' own. Every client's bytes are checked."""
    n, blob = plan.flight_clients, data.flight

    def measure(target: str, rep: int) -> Record:
        url = f"{stack.url(target)}/v2/{data.flight_repo}/blobs/{blob.digest}"
        pids = {"front": stack.pid(target), "upstream": stack.upstream_pid}
        out_dir = work / f"flight-{target}-{rep}"
        auth = _auth(stack, target, token)
        with Sampler(pids) as sampler:
            t = curl_parallel([url] * n, auth, out_dir, [blob.digest] * n)
        return {**_usage_record(t.seconds, t.size, sampler), "clients": n, "verified": n}

    logger.info("%d clients, one cold %s blob", n, size_label(blob.size))
    targets = ("direct", CACHED, "peer")
    stored = (data.flight_repo, (blob,))
    return {str(n): _each_target(stack, plan.slow_reps, measure, targets, stored, ("direct",))}


def idle_connections(
    stack: Stack, data: Data, plan: Plan, token: str, work: Path
) -> dict[str, Any]:
    """The serving process's RSS with plan.idle_connections connections open that send
    nothing (from IDLE_SOURCE), and its peak while the largest concurrency run pulls beside
    them. The process has served the sections before, so its heap has grown already: what
    the connections add to a fresh process is not measured here."""
    n = plan.concurrency[-1]

    def measure(target: str, rep: int) -> Record:
        pid = stack.pid(target)
        port = int(stack.host(target).rsplit(":", 1)[1])
        socks = hold_connections(port, plan.idle_connections, IDLE_SOURCE)
        try:
            time.sleep(SETTLE)
            idle = rss(pid)
            record = _parallel_pulls(stack, data, target, n, token, work / f"idle-{target}-{rep}")
        finally:
            for s in socks:
                s.close()
        record.update(connections=plan.idle_connections, rss_idle=idle)
        return record

    logger.info("%d idle connections, %d clients", plan.idle_connections, n)
    return {str(plan.idle_connections): _each_target(stack, 1, measure)}
