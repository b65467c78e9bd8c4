"""Leases: the blobs a running operation (pull, add, import, export) writes or needs, so ``gc`` leaves them be.

A pull writes its blobs before its one catalog transaction; until then nothing in the catalog references them.
Each such operation holds a lease: a file ``<store>/leases/<id>.lease`` that it keeps ``flock``-ed for as long
as it runs, holding one digest per line, each written *before* the blob appears under its name. ``gc`` reads
the leases whose lock is held (their owner is alive) and never removes a digest they name; a lease whose lock
can be taken belongs to a process that died, and is itself garbage.

Locks are per open file, so a lease held by this very process still reads as live (tests, the Python API).
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import socket
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from registry.errors import StorageError
from registry.hashing import SHA256_RE

LEASE_SUFFIX = ".lease"


class Lease:
    """One running operation's claim on the digests it adds; thread-safe (a pull writes from several threads)."""

    def __init__(self, folder: Path, purpose: str) -> None:
        self.path = folder / f"{uuid.uuid4().hex}{LEASE_SUFFIX}"
        self._lock = threading.Lock()
        self._seen: set[str] = set()
        try:
            folder.mkdir(parents=True, exist_ok=True)
            self._file = open(self.path, "a", encoding="utf-8")
        except OSError as exc:
            raise _unwritable(exc, self.path) from exc
        fcntl.flock(self._file.fileno(), fcntl.LOCK_EX)
        header = {"purpose": purpose, "pid": os.getpid(), "host": socket.gethostname(), "started": time.time()}
        self._write(json.dumps(header) + "\n")

    def _write(self, line: str) -> None:
        try:
            self._file.write(line)
            self._file.flush()
        except OSError as exc:
            raise _unwritable(exc, self.path) from exc

    def add(self, sha256: str) -> None:
        """Claim a digest; returns once the claim is on disk, where gc reads it."""
        with self._lock:
            if sha256 in self._seen or self._file.closed:
                return
            self._write(sha256 + "\n")
            self._seen.add(sha256)

    def release(self) -> None:
        # unlink first, unlock second: a gc that takes the lock meanwhile finds no file, never a stale one
        with self._lock:
            if self._file.closed:
                return
            self.path.unlink(missing_ok=True)
            self._file.close()


def _unwritable(exc: OSError, path: Path) -> StorageError:
    if exc.errno == errno.ENOSPC:
        return StorageError(f"no space left on the store's disk for the lease {path}; free space and run the command "
                            "again (nothing partial was recorded)", details={"errno": exc.errno})
    return StorageError(f"cannot write the lease {path}: {exc}", details={"errno": exc.errno})


@dataclass(frozen=True)
class LeaseInfo:
    path: str
    purpose: str
    pid: int | None
    host: str | None
    started: float | None
    live: bool  # its owner still holds the lock
    digests: frozenset[str]


def read_leases(folder: Path) -> list[LeaseInfo]:
    """Every lease in the folder, live or stale (a garbled line is skipped: it claims nothing)."""
    out: list[LeaseInfo] = []
    if not folder.is_dir():
        return out
    for path in sorted(folder.glob(f"*{LEASE_SUFFIX}")):
        try:
            with open(path, encoding="utf-8", errors="replace") as f:
                live = _held(f.fileno())
                lines = f.read().splitlines()
        except FileNotFoundError:
            continue  # released while we looked
        header: dict = {}
        if lines:
            try:
                header = json.loads(lines[0])
            except ValueError:
                header = {}
        digests = frozenset(line for line in lines[1:] if SHA256_RE.match(line))
        out.append(LeaseInfo(str(path), str(header.get("purpose", "?")), _int(header.get("pid")),
                             header.get("host"), _float(header.get("started")), live, digests))
    return out


def lease_is_live(path: Path) -> bool:
    """Whether the lease file exists and its owner still holds its lock."""
    try:
        with open(path, encoding="utf-8") as f:
            return _held(f.fileno())
    except FileNotFoundError:
        return False


def _held(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError as exc:
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            return True
        raise
    fcntl.flock(fd, fcntl.LOCK_UN)
    return False


def _int(value: object) -> int | None:
    return value if isinstance(value, int) else None


def _float(value: object) -> float | None:
    return float(value) if isinstance(value, (int, float)) else None
