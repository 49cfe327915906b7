"""Opening an S3 cache: the client, a check that the bucket answers, the local spool for
fills, and the catalog, content and occupancy that the cache addon uses as it uses a
directory's."""

import contextlib
import logging
import secrets
import tempfile
from pathlib import Path
from typing import NamedTuple

from ..errors import CacheError
from ..metrics import CacheMetrics
from .catalog import S3Catalog
from .client import S3_ERRORS, open_client
from .content import S3Content
from .lease import Lease
from .location import S3Location
from .occupancy import SharedOccupancy
from .spool import SpoolStore

logger = logging.getLogger(__name__)

SPOOL = Path(tempfile.gettempdir()) / "regmirror-spool"


class S3Backend(NamedTuple):
    store: SpoolStore
    catalog: S3Catalog
    content: S3Content
    occupancy: SharedOccupancy


async def open_backend(
    stack: contextlib.AsyncExitStack, location: S3Location, endpoint: str,
    metrics: CacheMetrics,
) -> S3Backend:  # fmt: skip
    """Raises CacheError saying why the bucket cannot be used."""
    client = await open_client(stack, endpoint)
    try:
        await client.head_bucket(Bucket=location.bucket)
    except S3_ERRORS as e:
        where = endpoint or "AWS"
        raise CacheError(f"bucket {location.bucket} at {where} cannot be used: {e}") from e
    store = SpoolStore.open(SPOOL, client, location)
    store.recover()
    replica = secrets.token_hex(6)  # names this process's access batches and lease
    catalog = S3Catalog(client, location, replica)
    content = S3Content(client, location)
    occupancy = SharedOccupancy(catalog, content, store, Lease(client, location, replica),
                                metrics)  # fmt: skip
    return S3Backend(store, catalog, content, occupancy)
