"""The filling client's side of a fill: what it may be sent, and when."""

from .errors import DiskError
from .fill import Fill


class Tee:
    """The filling client's side: `chunk()` writes each chunk to the fill and returns what to
    send on. The last byte of a body of known size is held back until `end()`, which verifies
    and returns it, or raises FillFailed: then abort the client's connection, never end the
    body. Once the bytes are known to be bad (too long, aborted), nothing more is sent.
    After a disk error the client still gets every byte, verified; only the commit fails."""

    def __init__(self, fill: Fill) -> None:
        self.fill = fill
        self._held = b""

    def chunk(self, data: bytes) -> bytes:
        fill = self.fill
        fill.write(data)
        if fill.failure is not None and not isinstance(fill.failure, DiskError):
            return b""
        if fill.expected_size is None or fill.written < fill.expected_size:
            return data
        keep = max(len(data) - (fill.written - fill.expected_size + 1), 0)
        self._held += data[keep:]
        return data[:keep]

    def end(self) -> bytes:
        self.fill.verify()
        held, self._held = self._held, b""
        return held
