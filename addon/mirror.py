"""regmirror: a Docker/OCI registry pull mirror.

mitmdump -s addon/mirror.py --mode reverse:https://registry-1.docker.io@5000
"""

from regmirror.addons import mirror_addons

addons = mirror_addons()
