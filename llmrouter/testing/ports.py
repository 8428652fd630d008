"""A free TCP port for a server of the tests, the benchmarks or the demo to listen on.

The port is bound once and released, so another process could take it before
the caller binds it; on a loopback interface, picked from the kernel's
ephemeral range, that race is rare enough for tests.
"""

from __future__ import annotations

import socket

__all__ = ["free_port"]


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on at ``host`` right now."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])
