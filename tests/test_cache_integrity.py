import hashlib
import os
from pathlib import Path

from regmirror.cache.integrity import Verified, matches

BODY = b"x" * 5000
DIGEST = "sha256:" + hashlib.sha256(BODY).hexdigest()


async def test_a_file_is_served_only_as_verified(tmp_path):
    path = tmp_path / "f"
    path.write_bytes(BODY)
    v = Verified()
    assert await v.check(DIGEST, path, len(BODY))  # hashed once: not verified here before
    assert v.stamps[DIGEST][0] == len(BODY)
    data = bytearray(BODY)
    data[10] ^= 1
    path.write_bytes(bytes(data))
    os.utime(path, ns=(1, 1))  # changed on disk: the stamp differs, it is hashed again
    assert not await v.check(DIGEST, path, len(BODY))
    assert not await v.check(DIGEST, tmp_path / "missing", len(BODY))
    assert not await v.check(DIGEST, path, len(BODY) + 1)  # the index says another size


def test_matches():
    assert not matches(Path("/nonexistent"), DIGEST)
