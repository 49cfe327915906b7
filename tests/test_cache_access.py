from regmirror.cache.access import AccessBatcher

A = "sha256:" + "a" * 64
B = "sha256:" + "b" * 64


def test_touches_are_collected_per_digest_until_drained():
    batcher = AccessBatcher(interval=30.0, max_entries=3, now=100.0)
    assert not batcher.touch(A, 101.0)
    assert not batcher.touch(A, 105.0)
    assert not batcher.touch(B, 103.0)
    assert not batcher.touch(A, 102.0)  # out of order: the latest access stays
    assert len(batcher) == 2
    assert sorted(batcher.drain(110.0)) == [(A, 105.0, 3), (B, 103.0, 1)]
    assert len(batcher) == 0 and batcher.drain(111.0) == []


def test_a_flush_is_due_by_count_or_by_time():
    batcher = AccessBatcher(interval=30.0, max_entries=3, now=0.0)
    assert not batcher.touch(A, 1.0)
    assert not batcher.touch(B, 2.0)
    assert batcher.touch("sha256:" + "c" * 64, 3.0)  # the third distinct digest
    batcher.drain(3.0)
    assert not batcher.touch(A, 32.9)
    assert batcher.touch(A, 33.0)  # 30 s since the last drain
    batcher.drain(33.0)
    assert not batcher.touch(A, 34.0)
