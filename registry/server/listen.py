"""Binding the mirror's socket and running it under uvicorn."""

from __future__ import annotations

import errno
import logging
import socket
import sys
from typing import Any

from registry.errors import UsageError


def bind(host: str, port: int) -> socket.socket:
    """A listening socket, or a clear error naming the address (a busy port is the user's to fix)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise UsageError(f"cannot serve on {host}:{port}: the port is already in use; stop what listens there "
                             "or choose another with --port", details={"host": host, "port": port}) from exc
        raise UsageError(f"cannot serve on {host}:{port}: {exc.strerror}; check --host and --port",
                         details={"host": host, "port": port}) from exc
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def run_server(app: Any, sock: socket.socket, *, access_log: bool, keep_alive: float) -> None:
    import uvicorn

    config = uvicorn.Config(app, log_level="info" if access_log else "warning", access_log=access_log,
                            http="httptools", loop="asyncio", lifespan="on", server_header=False,
                            timeout_keep_alive=keep_alive)
    if access_log:
        # uvicorn's access logger writes to stdout by default; ours go to stderr, as every note does
        logging.getLogger("uvicorn.access").handlers = [logging.StreamHandler(sys.stderr)]
    uvicorn.Server(config).run(sockets=[sock])
