"""regmirror: a Docker/OCI registry pull mirror as a set of mitmproxy addons.

`addon/mirror.py` is the script users pass to `mitmdump -s`; it loads
`regmirror.addons.mirror_addons()`. The subpackages are by concern: routing/, auth/,
transport/, observe/ (the README's module map).
"""
