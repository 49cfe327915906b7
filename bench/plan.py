"""How much each benchmark section moves and how often: the full run and --quick."""

from __future__ import annotations

from dataclasses import dataclass

KiB = 1 << 10
MiB = 1 << 20
GiB = 1 << 30
DEFAULT_REDIRECT_MIN = MiB  # regmirror_blob_redirect_min


@dataclass(frozen=True)
class Plan:
    big: int  # the single large blob (curl, skopeo, RSS, CPU)
    scaling: tuple[int, ...]  # further blob sizes for the scaling figure (big is added)
    reps: int  # repetitions of each single-blob curl measurement, per target
    slow_reps: int  # repetitions of the slower ones: skopeo pulls of the large blob, concurrency
    small_requests: int  # manifest requests per target, kind and repetition
    small_reps: int
    small_seconds: float  # at most this long per target, kind and repetition
    warmup_requests: int
    pull_reps: int  # cold pulls of a multi-arch image, per target
    concurrency: tuple[int, ...]  # clients pulling different blobs at once
    concurrent_blob: int  # size of each of those blobs
    idle_connections: int  # held open beside the largest concurrency run (RSS)
    flight_clients: int  # clients asking for one cold blob at once (single flight)
    flight_blob: int  # its size

    @property
    def sizes(self) -> tuple[int, ...]:
        return tuple(sorted({*self.scaling, self.big}))

    @property
    def redirect_min(self) -> int:
        """The data plane's regmirror_blob_redirect_min: its default (1 MiB), or the
        concurrency blobs' size when smaller (--quick), so that they are redirected too."""
        return min(DEFAULT_REDIRECT_MIN, self.concurrent_blob)


FULL = Plan(
    big=GiB,
    scaling=(64 * MiB, 256 * MiB),
    reps=5,
    slow_reps=3,
    small_requests=700,
    small_reps=3,
    small_seconds=4.0,
    warmup_requests=100,
    pull_reps=3,
    concurrency=(16, 64),
    concurrent_blob=8 * MiB,
    idle_connections=1000,
    flight_clients=8,
    flight_blob=64 * MiB,
)

# Checks that the harness works (the test suite runs it): tiny sizes, one repetition.
QUICK = Plan(
    big=4 * MiB,
    scaling=(256 * KiB, 1 * MiB),
    reps=1,
    slow_reps=1,
    small_requests=40,
    small_reps=1,
    small_seconds=2.0,
    warmup_requests=5,
    pull_reps=1,
    concurrency=(4, 8),
    concurrent_blob=256 * KiB,
    idle_connections=100,
    flight_clients=8,
    flight_blob=1 * MiB,
)


def size_label(n: int) -> str:
    """1073741824 -> "1g", 67108864 -> "64m", 262144 -> "256k"."""
    for unit, factor in (("g", GiB), ("m", MiB), ("k", KiB)):
        if n >= factor and n % factor == 0:
            return f"{n // factor}{unit}"
    return str(n)


def human_bytes(n: int) -> str:
    """1073741824 -> "1 GiB"."""
    label = size_label(n)
    return f"{label[:-1]} {label[-1].upper()}iB" if label[-1] in "gmk" else f"{n} B"
