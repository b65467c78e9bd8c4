"""Digests of bytes: sha256 (identity), blake3 (re-verification) and git blob sha1 (the Hub's oid).

Ingest computes all three in one pass. sha256 and blake3 both release the GIL, so a large file is
read and blake3-hashed on one thread while sha256 runs on another: the pass costs about what sha256
alone costs (bench/hashing.py measures it).
"""

from __future__ import annotations

import hashlib
import os
import queue
import re
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import blake3 as _blake3

# The Hub stores files of 10 MiB and more (and all binaries) in LFS; smaller text files keep a git
# blob sha1 as their tree oid. We keep the sha1 for every file under this size.
LFS_THRESHOLD = 10 * 1024 * 1024
# 1 MiB: a chunk stays in the CPU caches between being read, blake3-hashed and sha256-hashed (8 MiB
# chunks spill to memory and cost ~30% of sha256's speed here).
CHUNK = 1024 * 1024
_PARALLEL_MIN = 1024 * 1024
_PIPELINE_MIN = 4 * 1024 * 1024  # below this a helper thread costs more than it saves
_BUFFERS = 3  # chunks in flight between the reading thread and the sha256 thread

SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
SHA1_RE = re.compile(r"^[0-9a-f]{40}$")

_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="blake3")


@dataclass(frozen=True)
class Digests:
    size: int
    sha256: str
    blake3: str
    git_sha1: str | None  # None for files at or over LFS_THRESHOLD


def git_blob_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def lfs_pointer(sha256: str, size: int) -> bytes:
    """The git-lfs pointer file the Hub stores in git for an LFS object."""
    return f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {size}\n".encode()


def lfs_pointer_oid(sha256: str, size: int) -> str:
    """The tree ``oid`` the Hub reports for an LFS file: the git sha1 of its pointer."""
    return git_blob_sha1(lfs_pointer(sha256, size))


class MultiHasher:
    """Feed bytes in order; ``finish()`` returns all digests. Needs the size up front for git sha1."""

    def __init__(self, expected_size: int | None = None, *, git: bool | None = None) -> None:
        self._sha = hashlib.sha256()
        self._b3 = _blake3.blake3()
        want_git = git if git is not None else (expected_size is not None and expected_size < LFS_THRESHOLD)
        self._git = None
        if want_git:
            if expected_size is None:
                raise ValueError("git blob sha1 needs the size before the bytes")
            self._git = hashlib.sha1(b"blob %d\0" % expected_size)
        self._expected = expected_size
        self._size = 0

    @property
    def size(self) -> int:
        return self._size

    def update(self, chunk: bytes | bytearray | memoryview) -> None:
        n = len(chunk)
        if n >= _PARALLEL_MIN:
            pending = _pool.submit(self._b3.update, chunk)
            self._sha.update(chunk)
            if self._git is not None:
                self._git.update(chunk)
            pending.result()
        else:
            self._sha.update(chunk)
            self._b3.update(chunk)
            if self._git is not None:
                self._git.update(chunk)
        self._size += n

    def finish(self) -> Digests:
        git = None
        if self._git is not None:
            # A size that differs from the announced one makes the sha1 meaningless: drop it.
            git = self._git.hexdigest() if self._size == self._expected else None
        return Digests(self._size, self._sha.hexdigest(), self._b3.hexdigest(), git)


def hash_stream(fin: BinaryIO, size: int, *, sink: Callable[[memoryview], None] | None = None,
                progress: Callable[[int], None] | None = None, git: bool | None = None,
                chunk_size: int = CHUNK) -> Digests:
    """One pass over ``fin`` (``size`` bytes expected): sha256 + blake3 (+ git sha1), and ``sink`` gets
    every chunk (a copy into the store).

    sha256 is the slowest of the three, so it gets this thread to itself: a helper thread reads each
    chunk, feeds blake3 and ``sink``, and hands the chunk over (a few buffers in rotation). The pass
    then runs at the speed of sha256 alone; reading no longer waits on hashing or the other way round.
    """
    want_git = git if git is not None else size < LFS_THRESHOLD
    sha = hashlib.sha256()
    b3 = _blake3.blake3()
    git_h = hashlib.sha1(b"blob %d\0" % size) if want_git else None
    total = 0

    def consume(view: memoryview) -> None:
        nonlocal total
        sha.update(view)
        if git_h is not None:
            git_h.update(view)
        total += len(view)
        if progress is not None:
            progress(len(view))

    if size < _PIPELINE_MIN:
        buf = bytearray(max(min(chunk_size, size + 1), 1))
        while n := fin.readinto(buf):
            view = memoryview(buf)[:n]
            b3.update(view)
            if sink is not None:
                sink(view)
            consume(view)
    else:
        free: queue.SimpleQueue[bytearray | None] = queue.SimpleQueue()
        full: queue.SimpleQueue[tuple[bytearray | BaseException | None, int]] = queue.SimpleQueue()
        for _ in range(_BUFFERS):
            free.put(bytearray(chunk_size))

        def reader() -> None:
            try:
                while (buf := free.get()) is not None:
                    n = fin.readinto(buf)
                    if not n:
                        full.put((None, 0))
                        return
                    view = memoryview(buf)[:n]
                    b3.update(view)
                    if sink is not None:
                        sink(view)
                    full.put((buf, n))
            except BaseException as exc:  # handed to the caller's thread, raised there
                full.put((exc, 0))

        worker = threading.Thread(target=reader, name="hash-reader", daemon=True)
        worker.start()
        try:
            while True:
                item, n = full.get()
                if item is None:
                    break
                if isinstance(item, BaseException):
                    raise item
                consume(memoryview(item)[:n])
                free.put(item)
        finally:
            free.put(None)  # stop the reader (it may still be filling a buffer)
            worker.join()
    git_sha1 = git_h.hexdigest() if git_h is not None and total == size else None
    return Digests(total, sha.hexdigest(), b3.hexdigest(), git_sha1)


def hash_file(path: Path | str, *, chunk_size: int = CHUNK) -> Digests:
    """One pass over a file: sha256 + blake3 (+ git sha1 under the LFS threshold)."""
    with open(path, "rb", buffering=0) as f:
        return hash_stream(f, os.fstat(f.fileno()).st_size, chunk_size=chunk_size)


def hash_bytes(data: bytes) -> Digests:
    hasher = MultiHasher(len(data))
    hasher.update(data)
    return hasher.finish()


def blake3_file(path: Path | str, *, threads: int | None = None) -> str:
    """Re-verification hash: blake3 over a memory map, on every core."""
    max_threads = _blake3.blake3.AUTO if threads is None else threads
    hasher = _blake3.blake3(max_threads=max_threads)
    if os.stat(path).st_size == 0:
        return hasher.hexdigest()
    hasher.update_mmap(str(path))
    return hasher.hexdigest()


def sha256_file(path: Path | str, *, chunk_size: int = CHUNK) -> str:
    h = hashlib.sha256()
    with open(path, "rb", buffering=0) as f:
        while chunk := f.read(chunk_size):
            h.update(chunk)
    return h.hexdigest()


def root_digest(entries: Iterable[tuple[str, int, str]]) -> str:
    """The model's root digest: sha256 over sorted ``path\\tsize\\tsha256\\n`` lines.

    Unlike model-signing's root, names count: renaming or moving a file changes the root.
    """
    h = hashlib.sha256()
    for path, size, sha in sorted(entries):
        h.update(f"{path}\t{size}\t{sha}\n".encode())
    return h.hexdigest()
