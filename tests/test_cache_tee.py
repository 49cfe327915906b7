import errno
import hashlib
import os

import pytest
from regmirror.cache import fill as fill_module
from regmirror.cache.errors import DigestMismatch, LongBody
from regmirror.cache.store import Store
from regmirror.cache.tee import Tee

BODY = bytes(range(256)) * 40
DIGEST = "sha256:" + hashlib.sha256(BODY).hexdigest()


@pytest.fixture
def store(tmp_path):
    return Store.open(tmp_path / "cache")


def chunks(data, size=1000):
    return [data[i : i + size] for i in range(0, len(data), size)]


def enospc(*args, **kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


@pytest.mark.parametrize("expected", [len(BODY), None])
def test_tee_holds_the_last_byte_until_verified(store, expected):
    tee = Tee(store.fill(DIGEST, expected))
    sent = b"".join(tee.chunk(c) for c in chunks(BODY, 3000))
    assert sent == (BODY[:-1] if expected else BODY)
    sent += tee.end()
    assert sent == BODY and tee.fill.verified


def test_tee_raises_at_the_end_of_a_wrong_body(store):
    tee = Tee(store.fill(DIGEST, len(BODY)))
    sent = b"".join(tee.chunk(c) for c in chunks(b"!" + BODY[1:]))
    assert sent == b"!" + BODY[1:-1]  # everything but the byte that would complete it
    with pytest.raises(DigestMismatch):
        tee.end()


def test_tee_sends_nothing_more_once_the_body_is_too_long(store):
    tee = Tee(store.fill(DIGEST, 10))
    assert tee.chunk(b"a" * 6) == b"a" * 6
    assert tee.chunk(b"b" * 6) == b""  # overran: the fill failed, the client is cut off
    assert tee.chunk(b"c") == b""
    with pytest.raises(LongBody):
        tee.end()


def test_tee_keeps_sending_after_a_disk_error(store, monkeypatch):
    tee = Tee(store.fill(DIGEST, len(BODY)))
    monkeypatch.setattr(fill_module.os, "write", enospc)
    sent = b"".join(tee.chunk(c) for c in chunks(BODY))
    assert tee.fill.reason == "disk error"
    assert sent + tee.end() == BODY
