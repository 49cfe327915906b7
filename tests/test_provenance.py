from regmirror.auth.provenance import ANONYMOUS, CLIENT, ROUTE, Provenances


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
