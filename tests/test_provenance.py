from regmirror.auth.provenance import ANONYMOUS, CLIENT, ROUTE, Provenances
from regmirror.cache.decisions import may_read


def test_tokens_the_mirror_handed_out_keep_their_provenance():
    p = Provenances()
    p.add("anon", ANONYMOUS, 300, now=0)
    p.add("bot", ROUTE, 300, now=0)
    assert p.of("", now=1) == ANONYMOUS  # no credentials at all
    assert p.of("Bearer anon", now=1) == ANONYMOUS
    assert p.of("bearer bot", now=1) == ROUTE
    # anything else is the client's own: a token from elsewhere, Basic, an expired one
    assert p.of("Bearer other", now=1) == CLIENT
    assert p.of("Basic YTpi", now=1) == CLIENT
    assert p.of("Bearer anon", now=301) == CLIENT
    assert p.of("Bearer \udcff", now=1) == CLIENT


def test_short_lived_tokens_are_kept_a_minute():
    p = Provenances()
    p.add("t", ANONYMOUS, 1, now=0)
    assert p.of("Bearer t", now=59) == ANONYMOUS


def test_a_token_another_replica_handed_out_is_the_clients_own():
    """Each process has its own ledger: a token replica 1 handed out, unknown to replica 2,
    reads as the client's own there, never as anonymous or the route's: what it fills is
    linked as the client's own, which the cache serves to no other client unchecked (fail
    closed, cache/decisions.may_read). Client-auth tokens carry theirs (client_tokens.py)."""
    one, two = Provenances(), Provenances()
    one.add("anon", ANONYMOUS, 300, now=0)
    one.add("bot", ROUTE, 300, now=0)
    assert two.of("Bearer anon", now=1) == CLIENT and two.of("Bearer bot", now=1) == CLIENT
    assert two.expiry("Bearer bot", now=1) is None
    assert not may_read(two.of("Bearer bot", now=1), client_checked=False)
