"""The pull-through cache's core: storage, index and decisions, with no mitmproxy in it.

- `decisions`: pure functions: sizes, tag freshness, stale-if-error, upstream failure,
  who may read what, what to evict.
"""
