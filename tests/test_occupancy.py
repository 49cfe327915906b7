import hashlib

import pytest
from prometheus_client import CollectorRegistry
from regmirror.cache.catalog import LocalCatalog
from regmirror.cache.content import LocalContent
from regmirror.cache.index import Index
from regmirror.cache.integrity import Verified
from regmirror.cache.metrics import CacheMetrics
from regmirror.cache.occupancy import Occupancy
from regmirror.cache.store import Store


async def commit(store: Store, index: Index, body: bytes, last_access: float) -> str:
    digest = "sha256:" + hashlib.sha256(body).hexdigest()
    fill = store.fill(digest, len(body))
    fill.write(body)
    async def record() -> None:
        index.add(digest, len(body), "x", "blob", last_access)

    await fill.commit(record)
    return digest


def occupancy_of(store: Store, index: Index, metrics: CacheMetrics) -> Occupancy:
    totals = index.total_size(), index.count()
    return Occupancy(LocalCatalog(index), LocalContent(store, Verified()), store, metrics, totals)


@pytest.fixture
def cache(tmp_path):
    store = Store.open(tmp_path / "c")
    index = Index.open(tmp_path / "c" / "index.db")
    yield store, index
    index.close()


async def test_commits_count_and_evict_the_least_recently_used_above_the_limit(cache):
    store, index = cache
    metrics = CacheMetrics(CollectorRegistry())
    occupancy = occupancy_of(store, index, metrics)
    occupancy.max_size = 250
    old = await commit(store, index, b"a" * 100, 1.0)
    await occupancy.committed(100, new=True)
    assert (occupancy.size, metrics.entries._value.get()) == (100, 1)
    await occupancy.committed(100, new=False)  # the same content again: counted once
    assert occupancy.size == 100
    recent = await commit(store, index, b"b" * 100, 2.0)
    await occupancy.committed(100, new=True)
    await commit(store, index, b"c" * 100, 3.0)
    await occupancy.committed(100, new=True)  # 300 > 250: down to 90 % (225)
    assert not store.has(old) and store.has(recent)
    assert (occupancy.size, metrics.entries._value.get()) == (200, 2)
    assert metrics.evictions._value.get() == 1


async def test_a_flush_writes_the_hits_and_reads_the_size_back(cache):
    store, index = cache
    metrics = CacheMetrics(CollectorRegistry())
    digest = await commit(store, index, b"a" * 100, 1.0)
    occupancy = occupancy_of(store, index, metrics)
    assert occupancy.size == 100 and metrics.entries._value.get() == 1
    occupancy.touch(digest, 50.0)
    occupancy.touch(digest, 60.0)
    await occupancy.flush()
    (entry,) = index.entries()
    assert (entry.hits, entry.last_access) == (2, 60.0)  # one write for the batch
    index.remove([digest])  # `./run.sh cache rm` beside the mirror
    await occupancy.flush()
    assert (occupancy.size, metrics.size._value.get(), metrics.entries._value.get()) == (0, 0, 0)
