"""Measuring tools: process sampling (RSS, CPU), curl transfers, skopeo pulls, request
latency, and the requests an upstream saw."""

from __future__ import annotations

import contextlib
import hashlib
import re
import resource
import shutil
import statistics
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psutil

from tests.support.clients import Skopeo
from tests.support.registry import Registry
from tests.support.tokenserver import TokenServer

MiB = 1 << 20
GiB = 1 << 30
SAMPLE_INTERVAL = 0.01  # seconds between RSS samples


# ------------------------------------------------------------------------------------------
# processes
# ------------------------------------------------------------------------------------------


def _cpu_seconds(proc: psutil.Process) -> float:
    t = proc.cpu_times()
    return float(t.user + t.system)


def _reset_peak(pid: int) -> bool:
    """Reset the kernel's peak RSS (VmHWM) of a process; False where that is not allowed."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def _kernel_peak(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def rss(pid: int) -> int:
    return int(psutil.Process(pid).memory_info().rss)


@dataclass
class Usage:
    """What one process used while a measurement ran."""

    cpu_seconds: float
    peak_rss: int  # bytes: the larger of the sampled maximum and the kernel's VmHWM
    sampled_peak_rss: int
    series: list[tuple[float, int]] = field(default_factory=list)  # (seconds, rss bytes)


class Sampler:
    """Samples the RSS of some processes every SAMPLE_INTERVAL in a thread, and their CPU
    time at start and end: `with Sampler({"mirror": pid}) as s: ...; s.usage["mirror"]`."""

    def __init__(self, pids: dict[str, int], keep_series: bool = False) -> None:
        self.procs = {name: psutil.Process(pid) for name, pid in pids.items()}
        self.keep_series = keep_series
        self.usage: dict[str, Usage] = {}
        self._cpu0: dict[str, float] = {}
        self._peak: dict[str, int] = {}
        self._series: dict[str, list[tuple[float, int]]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)
        self._t0 = 0.0

    def __enter__(self) -> Sampler:
        for name, proc in self.procs.items():
            _reset_peak(proc.pid)
            self._cpu0[name] = _cpu_seconds(proc)
            self._peak[name] = 0
            self._series[name] = []
        self._t0 = time.perf_counter()
        self._sample()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()
        for name, proc in self.procs.items():
            kernel = _kernel_peak(proc.pid) or 0
            self.usage[name] = Usage(
                cpu_seconds=_cpu_seconds(proc) - self._cpu0[name],
                peak_rss=max(kernel, self._peak[name]),
                sampled_peak_rss=self._peak[name],
                series=self._series[name] if self.keep_series else [],
            )

    def _sample(self) -> None:
        now = time.perf_counter() - self._t0
        for name, proc in self.procs.items():
            with contextlib.suppress(psutil.Error):
                rss = int(proc.memory_info().rss)
                self._peak[name] = max(self._peak[name], rss)
                self._series[name].append((now, rss))

    def _run(self) -> None:
        while not self._stop.wait(SAMPLE_INTERVAL):
            self._sample()


# ------------------------------------------------------------------------------------------
# transfers
# ------------------------------------------------------------------------------------------


class MeasureError(RuntimeError):
    """A transfer did not deliver what it should have."""


def curl_binary() -> str:
    path = shutil.which("curl")
    if path is None:
        raise MeasureError("curl not found: install it (apt-get install curl)")
    return path


@dataclass
class Transfer:
    seconds: float
    size: int
    redirects: int = 0  # followed (curl -L)

    @property
    def mb_per_s(self) -> float:
        return self.size / self.seconds / 1e6


def _follow(follow: bool) -> list[str]:
    """curl's redirect following: -L, which sends `headers` (Authorization) on only to the
    same scheme, host and port (curl 7.88; --location-trusted would send them anywhere)."""
    return ["-L"] if follow else []


def curl_get(url: str, headers: dict[str, str], expect_size: int, follow: bool = False) -> Transfer:
    """GET url to /dev/null with curl over HTTP/1.1 (https:// URLs: any certificate); wall
    time as curl measures it, redirects included (`follow`)."""
    args = [curl_binary(), "-sS", "--http1.1", "-k", "-o", "/dev/null", *_follow(follow)]
    args += ["-w", "%{http_code} %{size_download} %{time_total} %{num_redirects}"]
    for k, v in headers.items():
        args += ["-H", f"{k}: {v}"]
    res = subprocess.run([*args, url], capture_output=True, text=True, timeout=300)
    status, size, seconds, redirects = (res.stdout.split() + ["0", "0", "0", "0"])[:4]
    if res.returncode != 0 or status != "200" or int(size) != expect_size:
        raise MeasureError(
            f"curl {url}: exit {res.returncode}, HTTP {status}, {size} bytes; {res.stderr}"
        )
    return Transfer(float(seconds), int(size), int(redirects))


def curl_parallel(
    urls: Sequence[str],
    headers: dict[str, str],
    out_dir: Path,
    digests: Sequence[str],
    follow: bool = False,
) -> Transfer:
    """All urls at once, one connection each (curl --parallel), each to its own file; then
    every file's sha256 is checked against `digests` (outside the timed part)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    args = [
        curl_binary(), "-sS", "--parallel", "--parallel-immediate", *_follow(follow),
        "--parallel-max", str(len(urls)), "-w", "%{http_code} %{size_download} %{num_redirects}\n",
    ]  # fmt: skip
    for k, v in headers.items():
        args += ["-H", f"{k}: {v}"]
    files = [out_dir / f"{i}.blob" for i in range(len(urls))]
    for url, path in zip(urls, files, strict=True):
        args += ["-o", str(path), url]
    start = time.perf_counter()
    res = subprocess.run(args, capture_output=True, text=True, timeout=300)
    seconds = time.perf_counter() - start
    lines = [line.split() for line in res.stdout.splitlines() if line.strip()]
    statuses = [line[0] for line in lines]
    if res.returncode != 0 or statuses != ["200"] * len(urls):
        raise MeasureError(f"curl --parallel: exit {res.returncode}, {statuses}; {res.stderr}")
    size = 0
    for path, digest in zip(files, digests, strict=True):
        got = "sha256:" + _file_sha256(path)
        if got != digest:
            raise MeasureError(f"{path}: digest {got}, expected {digest}")
        size += path.stat().st_size
    shutil.rmtree(out_dir)
    return Transfer(seconds, size, sum(int(line[2]) for line in lines))


def _file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(4 * MiB):
            h.update(chunk)
    return h.hexdigest()


@dataclass
class Pull:
    seconds: float
    client_cpu_s: float  # skopeo's own CPU time (user + system)


def _children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def skopeo_pull(work: Path, ref: str, multi_arch: bool = False) -> Pull:
    """`skopeo copy docker://REF dir:...` with a fresh blob-info cache: wall time and
    skopeo's CPU time."""
    skopeo = Skopeo(work / "skopeo")
    dest = work / "dest"
    cpu = _children_cpu()
    start = time.perf_counter()
    skopeo.copy(ref, f"dir:{dest}", all=multi_arch)
    seconds = time.perf_counter() - start
    cpu = _children_cpu() - cpu
    shutil.rmtree(work)
    return Pull(seconds, cpu)


# ------------------------------------------------------------------------------------------
# small requests
# ------------------------------------------------------------------------------------------


def latencies(
    client: httpx.Client, method: str, path: str, n: int, max_seconds: float = 60.0
) -> list[float]:
    """Seconds per request for n requests over one keep-alive connection (fewer when they
    take more than max_seconds in all)."""
    out: list[float] = []
    clock = time.perf_counter
    deadline = clock() + max_seconds
    for _ in range(n):
        if clock() > deadline:
            break
        start = clock()
        r = client.request(method, path)
        out.append(clock() - start)
        if r.status_code != 200:
            raise MeasureError(f"{method} {path}: HTTP {r.status_code}")
    return out


def percentile(values: Sequence[float], p: float) -> float:
    """The p-th percentile (0..100), nearest rank."""
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, round(p / 100 * len(ordered) + 0.5) - 1))
    return ordered[k]


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


# ------------------------------------------------------------------------------------------
# upstream round trips
# ------------------------------------------------------------------------------------------

ROUND_TRIP_KINDS = ("ping", "challenge", "token", "manifest", "blob", "other")
_MANIFEST = re.compile(r"/v2/.+/manifests/(?P<reference>[^/]+)")
_BLOB = re.compile(r"/v2/.+/blobs/[a-z0-9]+:[0-9a-f]+")


CHALLENGED = " (401)"


def request_kind(method: str, path: str, status: int) -> str:
    """One upstream request, as counted: "GET ping" (`/v2/`), "HEAD manifest by tag",
    "GET manifest by digest", "GET blob", "GET other"; with " (401)" when it was answered
    with a challenge (a ping is a ping whatever its answer)."""
    path = path.split("?", 1)[0]
    if path.rstrip("/") == "/v2":
        return f"{method} ping"
    if m := _MANIFEST.fullmatch(path):
        what = "manifest by digest" if ":" in m["reference"] else "manifest by tag"
    elif _BLOB.fullmatch(path):
        what = "blob"
    else:
        what = "other"
    return f"{method} {what}{CHALLENGED if status == 401 else ''}"


def round_trip_kinds(requests: dict[str, int]) -> dict[str, int]:
    """Requests by request_kind() (and "token") -> round trips by ROUND_TRIP_KINDS: ping,
    challenge (any other 401), token, manifest, blob (HEAD or GET), other."""
    counts: Counter[str] = Counter({k: 0 for k in ROUND_TRIP_KINDS})
    for kind, n in requests.items():
        if kind.endswith(CHALLENGED):
            counts["challenge"] += n
        else:
            counts[kind.split(" ")[1] if " " in kind else kind] += n
    return dict(counts)


class UpstreamCounter:
    """Requests the upstream registry and its token service saw between mark() and count()
    (or requests())."""

    def __init__(self, registry: Registry, token_server: TokenServer) -> None:
        self.registry = registry
        self.token_server = token_server
        self._marks = (0, 0)

    def mark(self) -> None:
        self._marks = (len(self.registry.access_log()), self.token_server.mark())

    def count(self, settle: float = 0.2) -> dict[str, int]:
        """Round trips by kind: ping (GET /v2/), challenge (any other 401), token, manifest,
        blob (HEAD or GET), other."""
        return round_trip_kinds(self.requests(settle))

    def requests(self, settle: float = 0.2) -> dict[str, int]:
        """Requests by request_kind(), and "token" for the token service's."""
        time.sleep(settle)  # the registry writes its access log line after answering
        counts = Counter(
            request_kind(e.method, e.path, e.status)
            for e in self.registry.access_log()[self._marks[0] :]
        )
        if tokens := len(self.token_server.records_since(self._marks[1])):
            counts["token"] = tokens
        return dict(counts)


@contextlib.contextmanager
def timer() -> Iterator[list[float]]:
    """with timer() as t: ...; t[0] is the elapsed seconds."""
    out: list[float] = []
    start = time.perf_counter()
    try:
        yield out
    finally:
        out.append(time.perf_counter() - start)
