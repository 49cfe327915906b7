from mitmproxy import flow as mflow
from prometheus_client import CollectorRegistry
from regmirror.observe.activity import (
    MAX_TEXT,
    MINUTES,
    RECENT,
    Activity,
    Minute,
    Traffic,
    lookup,
    scrub,
    upstream_failure,
    window,
)
from regmirror.record import outcome, set_route

from tests.flowutil import respond, reverse_flow

HUB = "https://registry-1.docker.io"
D = "sha256:" + "a" * 64
T0 = 1_800_000_000.0  # a minute boundary (divisible by 60)


def test_traffic_per_minute_over_the_last_hour():
    t = Traffic()
    t.add(T0, Minute(cache_bytes=10, hits=1))
    t.add(T0 + 59, Minute(upstream_bytes=5, misses=1))
    t.add(T0 + 60, Minute(cache_bytes=1, hits=1))
    hour = t.last_hour(T0 + 61)
    assert len(hour) == MINUTES
    assert hour[-1] == Minute(cache_bytes=1, hits=1)
    assert hour[-2] == Minute(cache_bytes=10, upstream_bytes=5, hits=1, misses=1)
    assert sum(hour[:-2], Minute()) == Minute()
    assert t.total == Minute(cache_bytes=11, upstream_bytes=5, hits=2, misses=1)
    # an hour later the first minute has left the window, not the total
    later = t.last_hour(T0 + MINUTES * 60)
    assert later[0] == Minute(cache_bytes=1, hits=1) and sum(later[1:], Minute()) == Minute()
    t.add(T0 + MINUTES * 60 + 120, Minute(hits=1))
    assert len(t._minutes) == 1  # old buckets are dropped as time goes on
    assert t.total.hits == 3


def test_a_snapshot_is_a_copy():
    a = Activity(CollectorRegistry())
    a.traffic.add(T0, Minute(hits=1))
    shot = a.snapshot(T0)
    shot.minutes[-1].hits = 99
    assert a.traffic.last_hour(T0)[-1].hits == 1


def test_lookup_results():
    assert lookup("hit") == lookup("stale") == Minute(hits=1)
    assert lookup("miss") == lookup("fill failed: digest mismatch") == Minute(misses=1)
    assert lookup("") == Minute()


def test_scrub_keeps_no_credentials_of_urls_and_no_control_characters():
    text = "GET https://user:pw@cdn.example/blob?X-Amz-Signature=abc&t=1 failed\n\x1b[31m"
    out = scrub(text)
    assert "pw" not in out and "Signature" not in out and "abc" not in out
    assert out.startswith("GET https://cdn.example/blob?… failed") and "\n" not in out
    assert len(scrub("x" * 1000)) == MAX_TEXT


def test_window():
    assert window("100;w=21600") == 21600
    assert window("100") is None and window("100;w=x") is None


def routed(method="GET", path="/v2/library/x/manifests/1", **route):
    f = reverse_flow(method, path)
    r = {"op": "manifest", "registry": "docker.io", "upstream": HUB, "name": "library/x"}
    set_route(f, {**r, "reference": "1", **route})
    return f


def test_upstream_failure_tells_the_upstreams_doing_from_the_clients():
    f = routed()
    f.server_conn.error = "Connection killed: cannot connect to 127.0.0.1:1: Connect call failed"
    assert upstream_failure(f) == "cannot connect to 127.0.0.1:1: Connect call failed"
    g = routed()
    g.error = mflow.Error("upstream 127.0.0.1:1 timed out: no response within 60 s")
    assert upstream_failure(g).endswith("timed out: no response within 60 s")
    for msg in ("Client disconnected.", mflow.Error.KILLED_MESSAGE):
        h = routed()
        h.error = mflow.Error(msg)
        assert upstream_failure(h) == "", msg


def test_hits_and_upstream_bytes_are_counted_by_source():
    a = Activity(CollectorRegistry())
    hit = respond(routed(), 200, {"Content-Length": "100"}, b"x" * 100)
    outcome(hit)["cache"] = "hit"
    a.response(hit)
    miss = respond(routed(reference=D), 200, {}, b"y" * 40)
    outcome(miss)["cache"] = "miss"
    a.response(miss)
    via = respond(routed(reference=D, via="redirect"), 200, {}, b"z" * 7)
    outcome(via)["cache"] = "miss"  # the redirected half of the miss above: no second lookup
    a.response(via)
    head = respond(routed("HEAD"), 200, {"Content-Length": "5000"})
    a.response(head)
    refused = respond(routed(), 403, {}, b"denied")
    outcome(refused)["answered_by"] = "router"
    a.response(refused)
    assert a.traffic.total == Minute(cache_bytes=100, upstream_bytes=47, hits=1, misses=1)
    assert a.upstreams["docker.io"].status == 200  # the hit was no upstream answer


def test_upstream_health_and_ratelimit():
    metrics = CollectorRegistry()
    a = Activity(metrics)
    ok = respond(
        routed(), 200, {"ratelimit-remaining": "76;w=21600", "ratelimit-limit": "100;w=21600"}
    )
    a.response(ok)
    h = a.upstreams["docker.io"]
    assert (h.status, h.remaining, h.limit, h.window, h.error) == (200, 76, 100, 21600, 0.0)
    assert h.success == h.ratelimit_seen > 0
    labels = {"registry": "docker.io"}
    assert (
        metrics.get_sample_value("regmirror_upstream_last_success_timestamp_seconds", labels)
        == h.success
    )
    throttled = respond(routed(), 429, {"ratelimit-remaining": "0", "ratelimit-limit": "100"})
    a.response(throttled)
    assert (h.problem, h.remaining, h.window) == ("HTTP 429", 0, None)
    assert h.error >= h.success
    bad = respond(routed(), 502, {}, b"")
    outcome(bad)["bad_upstream"] = "a challenge without a realm"
    a.response(bad)
    assert h.problem == "HTTP 502: a challenge without a realm"
    assert (
        metrics.get_sample_value("regmirror_upstream_last_error_timestamp_seconds", labels)
        == h.error
    )
    gone = routed()
    gone.server_conn.error = "[Errno 111] Connect call failed"
    gone.error = mflow.Error("[Errno 111] Connect call failed")
    a.error(gone)
    assert h.problem == "[Errno 111] Connect call failed"
    client_left = routed()
    client_left.error = mflow.Error("Client disconnected.")
    before = h.error
    a.error(client_left)
    assert h.error == before


def test_stale_answers_offline_answers_and_fill_failures():
    a = Activity(CollectorRegistry())
    stale = respond(routed(), 200, {"Content-Length": "10"}, b"m" * 10)
    outcome(stale)["cache"] = "stale"
    a.response(stale)
    h = a.upstreams["docker.io"]
    assert h.problem == "the tag's revalidation failed: served stale" and not h.success
    offline = respond(routed(op="token"), 200, {}, b"{}")
    outcome(offline).update(answered_by="token proxy", offline="auth.test:443: refused")
    a.response(offline)
    assert h.problem == "unreachable, answered offline: auth.test:443: refused"
    killed = routed(op="blob", reference=D)
    outcome(killed)["cache"] = "fill failed: digest mismatch"
    killed.error = mflow.Error(mflow.Error.KILLED_MESSAGE)
    a.error(killed)
    assert [(e.kind, e.image, e.detail) for e in a.snapshot(0).recent] == [
        ("fill failed", f"docker.io/library/x@{D}", "digest mismatch"),
        ("stale", "docker.io/library/x:1", ""),
    ]
    assert a.traffic.total == Minute(cache_bytes=10, hits=1, misses=1)
    for _ in range(RECENT + 5):
        a.response(stale)
    assert len(a.recent) == RECENT
