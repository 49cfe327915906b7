"""The pull-through cache's core: storage, index and decisions, with no mitmproxy in it.

- `store`: content-addressed files (`Store`), fills in progress and their followers
  (`Store.fill`, `Store.filling`, `Store.follow`), temporary-file recovery, scans.
- `fill`: one fill (`Fill`: hash and write per chunk, verify, durable commit in a thread).
- `tee`: the filling client's side of a fill (`Tee`: holds the last byte back until the
  digest is verified), shaped for mitmproxy's `flow.response.stream` callable.
- `index`: SQLite index (WAL) of content, repository links with their provenance, and tags;
  reconciliation with the files after a crash.
- `access`: `AccessBatcher`, last-access times written in batches.
- `decisions`: pure functions: sizes, tag freshness, stale-if-error, upstream failure,
  who may read what, what to evict.
- `errors`: `CacheError` (unusable directory or index) and `FillFailed` with its reasons.

Start-up: `Store.open(root)`, `store.recover()`, `Index.open(root / "index.db")`,
`index.reconcile(store)`, all before serving (in a thread if the loop is running).
"""
