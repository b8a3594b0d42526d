"""Whether a host name is this machine's own: one rule for the server's Host check and the CLI's "is that server
here" (no web framework, so the CLI can ask without loading the server)."""

from __future__ import annotations

import ipaddress


def is_loopback_host(name: str) -> bool:
    """True for ``localhost``, a ``*.localhost`` name (RFC 6761: always this machine) and a loopback IP address
    (``127.0.0.0/8``, ``::1``); ``name`` lower-cased, without brackets or port."""
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False
