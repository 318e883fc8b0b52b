"""Is a model's port already taken? Checked before spawning, so the error names the port."""

from __future__ import annotations

import errno
import socket

LOOPBACK = "127.0.0.1"


def port_in_use(port: int, host: str = LOOPBACK) -> bool:
    """True when something is listening on host:port (binding it is refused).

    SO_REUSEADDR makes sockets lingering in TIME_WAIT (from a server just stopped) not count:
    the new server can bind over those too.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            # Other failures (a privileged port, say) are the server's to report.
            return exc.errno == errno.EADDRINUSE
    return False
