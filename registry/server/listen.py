"""Binding the mirror's socket and running it under uvicorn."""

from __future__ import annotations

import errno
import fcntl
import logging
import socket
import sys
import termios
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


STALLED_PERIODS = 3


def unsent_bytes(sock: socket.socket | None) -> int:
    """Bytes of responses still in the kernel's send queue (not yet acknowledged by the client); 0 where the
    platform cannot say (only Linux's SIOCOUTQ is asked)."""
    if sock is None or not hasattr(termios, "TIOCOUTQ"):
        return 0
    try:
        buf = fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, b"\0\0\0\0")
    except OSError:
        return 0
    return int.from_bytes(buf, sys.byteorder, signed=True)


def protocol_class() -> type:
    """uvicorn's httptools protocol, whose keep-alive timeout counts idle time only.

    uvicorn arms the timer when the app hands the last body byte to the transport, but a multi-megabyte body
    can then still sit in the kernel's send buffer while a slow client drains it; closing the connection then
    resets a client that is about to send its next request. So when the timer fires while the send queue is
    still draining (bytes still queued for the client), it is armed again; a client that reads nothing of them
    for STALLED_PERIODS periods in a row is closed as before."""
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    class IdleKeepAlive(HttpToolsProtocol):
        _last_unsent = -1
        _stalled = 0  # periods in a row in which the client read nothing of what is still queued

        def timeout_keep_alive_handler(self) -> None:
            unsent = unsent_bytes(self.transport.get_extra_info("socket")) if self.transport else 0
            if unsent > 0 and 0 <= self._last_unsent <= unsent:
                self._stalled += 1
            elif unsent > 0:
                self._stalled = 0
            if unsent > 0 and self._stalled < STALLED_PERIODS and not self.transport.is_closing():
                self._last_unsent = unsent
                self.timeout_keep_alive_task = self.loop.call_later(self.timeout_keep_alive,
                                                                    self.timeout_keep_alive_handler)
                return
            self._last_unsent, self._stalled = -1, 0
            super().timeout_keep_alive_handler()

        def on_response_complete(self) -> None:
            self._last_unsent, self._stalled = -1, 0
            super().on_response_complete()

    return IdleKeepAlive


def run_server(app: Any, sock: socket.socket, *, access_log: bool, keep_alive: float) -> None:
    import uvicorn

    config = uvicorn.Config(app, log_level="info" if access_log else "warning", access_log=access_log,
                            http=protocol_class(), loop="asyncio", lifespan="on", server_header=False,
                            timeout_keep_alive=keep_alive)
    # the app's own notes (a blob that shrank mid-send) go to stderr beside uvicorn's
    server_log = logging.getLogger("registry.server")
    if not server_log.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(levelname)s:     %(message)s"))
        server_log.addHandler(handler)
        server_log.setLevel(logging.INFO)
    if access_log:
        # uvicorn's access logger writes to stdout by default; ours go to stderr, as every note does
        logging.getLogger("uvicorn.access").handlers = [logging.StreamHandler(sys.stderr)]
    uvicorn.Server(config).run(sockets=[sock])
