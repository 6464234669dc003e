"""Helpers shared by the benchmark scripts (compare.py, stores.py)."""

import socket
import time


def free_port():
    """A free TCP port on loopback (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, attempts=200):
    """Waits until something accepts connections on `port`."""
    for _ in range(attempts):
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"port {port} never opened")
