"""regmirror: a Docker/OCI registry pull mirror as a set of mitmproxy addons.

`addon/mirror.py` is the script users pass to `mitmdump -s`; it loads `regmirror.addons()`.
"""
