import pytest
from regmirror.cache.errors import CacheError
from regmirror.cache.opening import open_cache


def test_a_damaged_index_is_set_aside(tmp_path):
    store, index = open_cache(str(tmp_path / "c"))
    index.close()
    (tmp_path / "c" / "index.db").write_bytes(b"garbage" * 500)
    store, index = open_cache(str(tmp_path / "c"))
    assert index.count() == 0
    assert list((tmp_path / "c").glob("index.db.damaged-*"))
    index.close()


def test_an_unusable_directory_names_its_path(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(CacheError, match="file"):
        open_cache(str(tmp_path / "file" / "c"))
