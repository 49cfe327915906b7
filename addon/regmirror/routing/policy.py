"""What the mirror shows of an upstream beyond the repositories it serves. Pure."""

import json
from collections.abc import Callable


def visible_catalog(body: bytes, allows: Callable[[str], bool]) -> bytes:
    """An upstream's `/v2/_catalog` answer with only the repositories the route serves; a
    body that is not a catalogue becomes an empty one, never passed on unread."""
    try:
        repositories = json.loads(body)["repositories"]
    except (ValueError, KeyError, TypeError):
        repositories = []
    if not isinstance(repositories, list):
        repositories = []
    served = [r for r in repositories if isinstance(r, str) and allows(r)]
    return json.dumps({"repositories": served}).encode()
