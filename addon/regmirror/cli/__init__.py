"""The cache command line, `./run.sh cache SUBCOMMAND` (`python -m regmirror.cli`): works on
the cache directory of a running mirror from a second process, with the mirror's own
index, store and eviction (cache/).

- `main`: the argument parser, exit statuses, errors said without a traceback;
- `commands`: ls, rm, verify, gc, warm: what each prints;
- `cachedir`: opening an existing cache, a consistent snapshot, purging, hashing, evicting;
- `graph`: pure: manifests parsed, the images and what each references, what a purge removes;
- `references`: pure: image references as docker reads them;
- `registry_client`, `warm`: pulling through the mirror as a client, for pre-warming.
"""
