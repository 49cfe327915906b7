"""Where the mirror's log goes, for production: one line per registry operation.

- Quiet by default: mitmproxy's per-connection lines (client and server connect and
  disconnect, "Streaming response from", all INFO records of `mitmproxy.proxy.server`) are
  dropped, and mitmdump's per-flow dump is off (`flow_detail=0`). Warnings and errors still
  show. `regmirror_log_flows=true` brings both back.
- JSON: the operation lines go to standard output as one JSON object per line, without the
  terminal log's time and client prefix, so log shippers read them as they are."""

import logging
import sys

CONNECTIONS = logging.getLogger("mitmproxy.proxy.server")


class _BelowWarning(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.WARNING


class _JsonLines(logging.StreamHandler):  # type: ignore[type-arg]
    """The operation lines as they are (JSON objects), one per line on standard output."""

    def __init__(self) -> None:
        super().__init__(sys.stdout)
        self.setFormatter(logging.Formatter("%(message)s"))


# One filter for the process (a logger ignores a filter it already has), so that undoing the
# quiet mode also undoes what an earlier instance did.
QUIET = _BelowWarning()


class LogOutput:
    """The logging set-up the options ask for; `apply` replaces it, `restore` undoes it."""

    def __init__(self, operations: logging.Logger) -> None:
        self.operations = operations

    def apply(self, quiet: bool, json_lines: bool) -> None:
        self.restore()
        if quiet:
            CONNECTIONS.addFilter(QUIET)
        if json_lines:
            self.operations.addHandler(_JsonLines())
            self.operations.propagate = False
            self.operations.setLevel(logging.INFO)  # whatever the terminal log's verbosity

    def restore(self) -> None:
        CONNECTIONS.removeFilter(QUIET)
        for handler in [h for h in self.operations.handlers if isinstance(h, _JsonLines)]:
            self.operations.removeHandler(handler)
        self.operations.propagate = True
        self.operations.setLevel(logging.NOTSET)
