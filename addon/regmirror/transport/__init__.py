"""Connections, streaming and redirects; the SSRF policy; mitmproxy's internals."""
