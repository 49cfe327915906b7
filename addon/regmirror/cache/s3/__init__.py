"""The cache on S3-compatible object storage, shared by every replica that names the same
`s3://bucket/prefix`: content by digest (content.py), uploaded while it streams (upload.py)
from a local spool file (spool.py); links, tags and batched access times as small objects
(catalog.py); eviction by one replica at a time, under a lease object (lease.py,
occupancy.py). `location.py` names every key; `client.py` makes the S3 client."""
