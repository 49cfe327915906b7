import datetime

from regmirror.observe.views.render import (
    duration,
    local_time,
    pairs,
    parse_json_object,
    table,
    value,
)

from tests.viewutil import text


def test_pairs_align_values():
    assert text(pairs([("a", "1"), ("long key", "2")], indent=2)) == (
        "  a:        1\n  long key: 2"
    )


def test_table_aligns_columns_and_leaves_no_trailing_spaces():
    out = text(table(["#", "digest", "size"], [["1", "sha256:aa", "1 B"], ["", "total", ""]]))
    assert out.splitlines() == [
        "  #  digest     size",
        "  1  sha256:aa  1 B",
        "     total",
    ]


def test_value_and_json():
    assert value("x") == "x"
    assert value(["a", 1]) == '["a",1]'
    assert parse_json_object(b'{"a": 1}') == {"a": 1}
    assert parse_json_object(b"[1]") is None
    assert parse_json_object(b"\xff") is None


def test_duration_and_local_time():
    assert duration(0) == "0 s"
    assert duration(299) == "4 min 59 s"
    assert duration(90061) == "1 d 1 h"
    ts = 1_700_000_000
    local = datetime.datetime.fromtimestamp(ts).astimezone().strftime("%Y-%m-%d %H:%M:%S")
    assert local_time(ts).startswith(local)
    assert local_time(ts, ts - 300).endswith("(in 5 min)")
    assert local_time(ts, ts + 61).endswith("(1 min 1 s ago)")
