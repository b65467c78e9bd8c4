"""Helpers for the mirror's reliability tests: ``registry serve`` as a real subprocess on a free loopback port,
with its stderr (access log included) captured, and raw-socket HTTP exchanges that keep every byte."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.oci_helpers import free_port  # noqa: F401  (one helper; tests import it from here too)
from tests.serve_helpers import REPO_ROOT


@dataclass
class ServeProcess:
    url: str
    port: int
    proc: subprocess.Popen
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")


@contextlib.contextmanager
def registry_serve(env: dict[str, str], log_path: Path, *extra: str) -> Iterator[ServeProcess]:
    """``python -m registry serve --access-log`` on a free port, stopped (SIGTERM, then SIGKILL) afterwards."""
    full = {**os.environ, **env, "PYTHONPATH": str(REPO_ROOT)}
    for attempt in range(5):
        port = free_port()
        with open(log_path, "w") as log:
            proc = subprocess.Popen([sys.executable, "-m", "registry", "serve", "--port", str(port), "--access-log",
                                     *extra], env=full, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        up = False
        while time.monotonic() < deadline and proc.poll() is None:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
                up = True
                break
            time.sleep(0.05)
        if up:
            break
        proc.kill()
        proc.wait()
        if "already in use" not in log_path.read_text():
            raise RuntimeError(f"registry serve did not start:\n{log_path.read_text()[-3000:]}")
    else:
        raise RuntimeError("no free port for registry serve")
    try:
        yield ServeProcess(f"http://127.0.0.1:{port}", port, proc, log_path)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@dataclass(frozen=True)
class RawReply:
    status: int
    headers: dict[str, str]
    body: bytes
    complete: bool  # the body holds Content-Length bytes (or the whole chunked/close-delimited body)


def raw_request(port: int, request: bytes, *, timeout: float = 30.0, rcvbuf: int | None = None) -> RawReply | None:
    """Send ``request`` bytes as they are; read one response. None when the server closed without answering."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        if rcvbuf:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        s.settimeout(timeout)
        s.connect(("127.0.0.1", port))
        s.sendall(request)
        return read_response(s, head=request.split(b" ", 1)[0].upper() == b"HEAD")


def read_response(s: socket.socket, *, head: bool = False, pace=None) -> RawReply | None:
    """One HTTP/1.1 response off ``s``; ``pace(n)`` is called after each chunk read (a slow reader sleeps)."""
    buf = b""
    while b"\r\n\r\n" not in buf:
        try:
            data = s.recv(65536)
        except ConnectionResetError:
            data = b""
        if not data:
            return None if not buf else RawReply(0, {}, buf, False)
        buf += data
    head_bytes, body = buf.split(b"\r\n\r\n", 1)
    lines = head_bytes.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1])
    headers: dict[str, str] = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        headers[k.strip().lower()] = v.strip()
    if head or status in (204, 304) or 100 <= status < 200:
        return RawReply(status, headers, b"", True)
    if "content-length" not in headers:
        while data := _recv(s):
            body += data
        return RawReply(status, headers, body, True)
    want = int(headers["content-length"])
    while len(body) < want:
        data = _recv(s, min(65536, want - len(body)))
        if not data:
            return RawReply(status, headers, body, False)
        body += data
        if pace is not None:
            pace(len(data))
    return RawReply(status, headers, body, True)


def _recv(s: socket.socket, n: int = 65536) -> bytes:
    try:
        return s.recv(n)
    except ConnectionResetError:
        return b""
