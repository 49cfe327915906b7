"""Token auth through the mirror, and client authentication."""
