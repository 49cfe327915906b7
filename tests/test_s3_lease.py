from regmirror.cache.s3.lease import LEASE_SECONDS, takeable


def test_a_lease_is_takeable_when_free_expired_or_ours():
    assert takeable(None, 100.0, "a")
    assert takeable({"holder": "a", "expires": 200.0}, 100.0, "a")
    assert not takeable({"holder": "b", "expires": 200.0}, 100.0, "a")
    assert takeable({"holder": "b", "expires": 100.0}, 100.0, "a")
    assert LEASE_SECONDS > 60  # longer than an eviction: it is not renewed while held


def test_a_lease_we_did_not_write_is_taken_over():
    for held in ({}, {"holder": "b"}, {"holder": "b", "expires": "soon"}, {"expires": None}):
        assert takeable(held, 100.0, "a")
