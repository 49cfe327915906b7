"""The cache's Prometheus metrics, in the mirror's registry."""

from prometheus_client import CollectorRegistry, Counter, Gauge


class CacheMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        r = registry
        self.lookups = Counter(
            "regmirror_cache_lookups",
            "Requests for content by digest or manifests by tag the cache could serve, by "
            "result: hit, miss, or stale (a tag served while the upstream fails).",
            ["route", "operation", "result"],
            registry=r,
        )
        self.failures = Counter(
            "regmirror_cache_fill_failures", "Fills not stored, by reason.", ["reason"], registry=r
        )
        self.evictions = Counter("regmirror_cache_evictions", "Content evicted.", registry=r)
        self.faults = Counter(
            "regmirror_cache_faults",
            "Faults of the cache's files (corrupted on disk) or index (locked, damaged); the "
            "request was answered from upstream.",
            ["kind"],
            registry=r,
        )
        self.size = Gauge("regmirror_cache_size_bytes", "Bytes in the cache.", registry=r)
        self.entries = Gauge(
            "regmirror_cache_entries", "Blobs and manifests in the cache.", registry=r
        )
