from regmirror.auth import ledger
from regmirror.auth.ledger import Ledger


def test_secrets_are_kept_for_their_clamped_lifetime():
    book = Ledger[str](60, 3600)
    book.add("short", "a", 1, now=0)
    book.add("long", "b", 10**9, now=0)
    assert book.get("short", now=59) == "a" and book.get("short", now=61) is None
    assert book.get("long", now=3599) == "b" and book.get("long", now=3601) is None
    assert book.get("", now=0) is None and book.get("\udcff", now=0) is None


def test_the_ledger_is_bounded(monkeypatch):
    monkeypatch.setattr(ledger, "MAX_ENTRIES", 3)
    book = Ledger[int](60, 3600)
    book.add("expired", 0, 60, now=0)
    for i in range(3):
        book.add(f"t{i}", i, 3600, now=100)  # the expired one makes room first
    assert book.get("expired", now=100) is None and len(book.entries) == 3
    book.add("t3", 3, 3600, now=100)  # then the oldest
    assert book.get("t0", now=100) is None and book.get("t3", now=100) == 3


def test_revoke_keeps_what_still_holds():
    book = Ledger[str](60, 3600)
    book.add("a", "keep", 300, now=0)
    book.add("b", "drop", 300, now=0)
    book.revoke(lambda v: v == "keep")
    assert book.get("a", now=1) == "keep" and book.get("b", now=1) is None
