"""Content-addressed blob store: ``<root>/sha256/ab/cd/<hex>``, read-only once written.

Writes go to a temp file on the same filesystem, are fsynced, checked, and renamed into place
under a per-digest lock, so concurrent writers of the same bytes converge on one blob and a
crash leaves at most a temp file (never a blob with wrong bytes under a digest's name).
"""

from __future__ import annotations

import errno
import fcntl
import os
import shutil
import tempfile
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from registry.errors import IntegrityError, StorageError, UsageError
from registry.hashing import CHUNK, SHA256_RE, Digests, MultiHasher, blake3_file, hash_stream
from registry.store.leases import LEASE_SUFFIX, Lease, LeaseInfo, lease_is_live, read_leases
from registry.store.statcache import StatCache, StatKey

PARTIAL_SUFFIX = ".partial"


def _check_digest(sha256: str) -> str:
    if not SHA256_RE.match(sha256 or ""):
        raise UsageError(f"not a sha256 digest: {sha256!r} (expected 64 lowercase hex characters)")
    return sha256


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _storage_error(exc: OSError, what: str) -> StorageError:
    if exc.errno == errno.ENOSPC:
        return StorageError(f"no space left on the store's disk while {what}; free space and run the command again "
                            "(nothing partial was recorded)", details={"errno": exc.errno})
    return StorageError(f"store I/O failed while {what}: {exc}", details={"errno": exc.errno})


def _write_all(f: BinaryIO, data: bytes | bytearray | memoryview) -> None:
    """Unbuffered writes may be short (e.g. just before ENOSPC): loop, or a blob would miss bytes."""
    view = memoryview(data).cast("B")
    while view:
        n = f.write(view)
        if n is None or n <= 0:
            raise OSError(errno.EIO, "write made no progress")
        view = view[n:]


@dataclass(frozen=True)
class StagedBlob:
    """Bytes copied and hashed into a temp file of the store, not yet under their digest's name."""

    digests: Digests
    tmp: Path


@dataclass(frozen=True)
class StoredBlob:
    digests: Digests
    path: Path
    created: bool  # False when the blob was already present (bytes not written again)
    repaired: bool = False  # True when a corrupt blob under this digest was replaced by proven bytes


class BlobStore:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self._objects = self.root / "sha256"
        self._tmp = self.root / "tmp"
        self._locks = self.root / "locks"
        self._leases = self.root / "leases"
        self._active: list[Lease] = []  # leases of operations running in this process on this store
        self._active_lock = threading.Lock()
        # Blobs are proven when written: seed the stat cache so the next fast verify hashes nothing.
        self.stat_cache = StatCache(self.root / "statcache.sqlite")

    # ---- layout -------------------------------------------------------------------------------
    def ensure(self) -> None:
        for d in (self._objects, self._tmp, self._locks):
            d.mkdir(parents=True, exist_ok=True)

    def path_for(self, sha256: str) -> Path:
        _check_digest(sha256)
        return self._objects / sha256[:2] / sha256[2:4] / sha256

    def same_file(self, sha256: str, other: Path) -> bool:
        """Whether ``other`` is a hard link of the stored blob ``sha256`` (a copy deployed from this store)."""
        try:
            a, b = os.stat(self.path_for(sha256)), os.stat(other)
        except OSError:
            return False
        return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)

    def partial_path(self, sha256: str) -> Path:
        """Where a resumable download of ``sha256`` keeps its bytes so far."""
        return self.path_for(sha256).with_name(sha256 + PARTIAL_SUFFIX)

    def has(self, sha256: str) -> bool:
        """Whether the blob is stored. A running operation that asks is about to use the blob: the digest joins
        its lease first, so a gc that has not removed it yet will not."""
        path = self.path_for(sha256)
        self.claim(sha256)
        return path.is_file()

    def open(self, sha256: str) -> BinaryIO:
        return open(self.path_for(sha256), "rb")

    def iter_blobs(self) -> Iterator[tuple[str, Path]]:
        if not self._objects.is_dir():
            return
        for a in sorted(self._objects.iterdir()):
            for b in sorted(a.iterdir()) if a.is_dir() else ():
                for f in sorted(b.iterdir()) if b.is_dir() else ():
                    if SHA256_RE.match(f.name):
                        yield f.name, f

    def stray_files(self) -> list[Path]:
        """Temp and partial files left by interrupted writes (safe to delete when nothing runs); the staging
        folder of a running operation (``tmp/<lease id>/``) is its own, and is not listed."""
        out: list[Path] = []
        if self._tmp.is_dir():
            out.extend(p for p in self._tmp.iterdir() if p.is_file())
        if self._objects.is_dir():
            out.extend(p for p in self._objects.glob("*/*/*") if not SHA256_RE.match(p.name))
        return sorted(out)

    def staging_folders(self) -> list[tuple[Path, bool]]:
        """Each operation's staging folder ``tmp/<lease id>/`` and whether its owner still runs (holds the lease)."""
        if not self._tmp.is_dir():
            return []
        return [(p, lease_is_live(self._leases / f"{p.name}{LEASE_SUFFIX}"))
                for p in sorted(self._tmp.iterdir()) if p.is_dir()]

    def clean_dead_staging(self) -> list[Path]:
        """Remove the staging folders of operations that died (kill -9, power cut) and the leases they left;
        returns what was removed. Every command runs this when it opens the registry."""
        removed: list[Path] = []
        for folder, live in self.staging_folders():
            if live:
                continue
            shutil.rmtree(folder, ignore_errors=True)
            lease = self._leases / f"{folder.name}{LEASE_SUFFIX}"
            if lease.exists() and not lease_is_live(lease):
                lease.unlink(missing_ok=True)
            removed.append(folder)
        return removed

    def _staging_dir(self) -> Path:
        """Where this process stages: the folder of its innermost running operation, else ``tmp/`` itself."""
        with self._active_lock:
            active = self._active[-1] if self._active else None
        if active is None:
            return self._tmp
        folder = self._tmp / active.path.name[: -len(LEASE_SUFFIX)]
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    # ---- locking ------------------------------------------------------------------------------
    @contextmanager
    def lock(self, sha256: str) -> Iterator[None]:
        with self.try_lock(sha256, wait=True):
            yield

    @contextmanager
    def try_lock(self, sha256: str, *, wait: bool = False) -> Iterator[bool]:
        """The digest's lock: True once held; without ``wait``, False at once if a writer holds it."""
        _check_digest(sha256)
        self._locks.mkdir(parents=True, exist_ok=True)
        fd = os.open(self._locks / f"{sha256}.lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                yield False
                return
            try:
                yield True
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

    # ---- leases (registry/store/leases.py) ----------------------------------------------------
    @contextmanager
    def lease(self, purpose: str) -> Iterator[Lease]:
        """While this runs, every blob written through this store (and each digest passed to ``claim``) is
        named in a lease that ``gc`` honours."""
        held = Lease(self._leases, purpose)
        with self._active_lock:
            self._active.append(held)
        try:
            yield held
        finally:
            with self._active_lock:
                self._active.remove(held)
            # the staging folder goes before the lease: a folder without a live lease is a dead one's
            shutil.rmtree(self._tmp / held.path.name[: -len(LEASE_SUFFIX)], ignore_errors=True)
            held.release()

    def claim(self, *sha256s: str) -> None:
        """Name digests in the running operations' leases (before their bytes appear, for writes)."""
        with self._active_lock:
            active = list(self._active)
        for lease in active:
            for sha in sha256s:
                lease.add(sha)

    def leases(self) -> list[LeaseInfo]:
        return read_leases(self._leases)

    # ---- writing ------------------------------------------------------------------------------
    def stage_file(self, src: Path, *, expected_sha256: str | None = None, git: bool | None = None,
                   progress: Callable[[int], None] | None = None) -> "StagedBlob":
        """Copy a file to a temp file in the store, hashing the bytes as they are copied (one pass).

        Nothing is visible under a digest's name until ``commit_staged``: a caller that stages several
        files and then finds one wrong can ``discard`` them all and leave the store as it was.
        ``progress(n)`` is called after each chunk with the number of bytes just copied; ``git`` forces
        (or suppresses) the git blob sha1 whatever the size.
        """
        self.ensure()
        try:
            size = os.stat(src).st_size
            fd, tmp_name = tempfile.mkstemp(dir=self._staging_dir(), prefix="ingest-")
        except OSError as exc:
            raise _storage_error(exc, f"creating a temp file for {src}") from exc
        tmp = Path(tmp_name)
        try:
            with open(src, "rb", buffering=0) as fin, os.fdopen(fd, "wb", buffering=0) as fout:
                digests = hash_stream(fin, size, sink=lambda view: _write_all(fout, view), progress=progress, git=git)
                fout.flush()
                os.fsync(fout.fileno())
            if digests.size != size:
                raise StorageError(f"{src} changed size while it was being read ({size} -> {digests.size} bytes); "
                                   "add it again once nothing writes to it", details={"path": str(src)})
            if expected_sha256 is not None and digests.sha256 != expected_sha256:
                raise IntegrityError(
                    f"{src}: sha256 is {digests.sha256}, expected {expected_sha256}",
                    details={"path": str(src), "expected": expected_sha256, "actual": digests.sha256},
                )
            return StagedBlob(digests, tmp)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            raise _storage_error(exc, f"copying {src} into the store") from exc
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise

    def stage_stream(self, fin: BinaryIO, size: int, *, what: str) -> "StagedBlob":
        """``stage_file`` for a stream (a bundle's tar member): copied and hashed into a temp file of the store;
        the caller checks the digests, then commits or discards. ``what`` names the source in errors."""
        self.ensure()
        try:
            fd, tmp_name = tempfile.mkstemp(dir=self._staging_dir(), prefix="import-")
        except OSError as exc:
            raise _storage_error(exc, f"creating a temp file for {what}") from exc
        tmp = Path(tmp_name)
        try:
            with os.fdopen(fd, "wb", buffering=0) as fout:
                digests = hash_stream(fin, size, sink=lambda view: _write_all(fout, view))
                fout.flush()
                os.fsync(fout.fileno())
            return StagedBlob(digests, tmp)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            raise _storage_error(exc, f"copying {what} into the store") from exc
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise

    def commit_staged(self, staged: "StagedBlob") -> StoredBlob:
        """Move a staged file into place under its digest (or drop it if the blob is already there)."""
        try:
            return self._commit(staged.tmp, staged.digests)
        except OSError as exc:
            raise _storage_error(exc, f"storing blob {staged.digests.sha256}") from exc
        finally:
            staged.tmp.unlink(missing_ok=True)

    def discard(self, staged: "StagedBlob") -> None:
        staged.tmp.unlink(missing_ok=True)

    def ingest_file(self, src: Path, *, expected_sha256: str | None = None,
                    progress: Callable[[int], None] | None = None) -> StoredBlob:
        """Copy a file into the store, hashing the bytes as they are copied (one pass)."""
        return self.commit_staged(self.stage_file(src, expected_sha256=expected_sha256, progress=progress))

    def writer(self, *, expected_sha256: str | None, expected_size: int | None, resume: bool = False,
               expected_git_sha1: str | None = None) -> "BlobWriter":
        """A streaming writer; with ``resume`` and a known digest it continues a ``.partial`` file.

        ``expected_git_sha1`` (a regular file's published git oid) is checked at commit, like the sha256."""
        self.ensure()
        return BlobWriter(self, expected_sha256, expected_size, resume, expected_git_sha1)

    def _commit(self, tmp: Path, digests: Digests, *, locked: bool = False) -> StoredBlob:
        """Rename ``tmp`` (proven to hold ``digests``) into place; ``locked``: the caller holds the digest's lock."""
        if not locked:
            with self.lock(digests.sha256):
                return self._commit(tmp, digests, locked=True)
        final = self.path_for(digests.sha256)
        self.claim(digests.sha256)  # before the name exists: a gc that sees the blob also sees the claim
        repaired = False
        if final.is_file():
            if self._intact(final, digests):
                tmp.unlink(missing_ok=True)  # another writer got there first: keep its blob, drop ours
                return StoredBlob(digests, final, created=False)
            repaired = True  # the bytes under this name rotted: the proven copy replaces them
        final.parent.mkdir(parents=True, exist_ok=True)
        os.chmod(tmp, 0o444)
        os.replace(tmp, final)
        _fsync_dir(final.parent)
        self._proven(final, digests)
        return StoredBlob(digests, final, created=True, repaired=repaired)

    def _intact(self, path: Path, digests: Digests) -> bool:
        """An existing blob is trusted if the stat cache proved it unchanged, else it is re-hashed (blake3)."""
        st = os.stat(path)
        key = StatKey.of(st)
        cached = self.stat_cache.get(digests.sha256)
        if cached is not None and cached == (key, digests.blake3):
            return True
        if st.st_size == digests.size and blake3_file(path) == digests.blake3:
            self.stat_cache.record([(digests.sha256, key, digests.blake3)])
            return True
        return False

    def _proven(self, path: Path, digests: Digests) -> None:
        self.stat_cache.record([(digests.sha256, StatKey.of(os.stat(path)), digests.blake3)])

    def remove(self, sha256: str) -> bool:
        """Delete one blob (garbage collection); returns whether it existed."""
        with self.lock(sha256):
            return self.remove_locked(sha256)

    def remove_locked(self, sha256: str) -> bool:
        """``remove`` for a caller that holds the digest's lock (gc re-checks its leases under it)."""
        path = self.path_for(sha256)
        try:
            os.chmod(path, 0o644)
            path.unlink()
            return True
        except FileNotFoundError:
            return False

class BlobWriter:
    """Write bytes whose digest may be known in advance; ``commit()`` checks size and sha256.

    A writer with a known digest writes ``<hex>.partial`` beside the final blob and holds the
    digest's lock, so a second process pulling the same bytes waits and then finds the blob.
    """

    def __init__(self, store: BlobStore, expected_sha256: str | None, expected_size: int | None, resume: bool,
                 expected_git_sha1: str | None = None):
        self.store = store
        self.expected_sha256 = _check_digest(expected_sha256) if expected_sha256 else None
        self.expected_size = expected_size
        self.expected_git_sha1 = expected_git_sha1
        self._lock_cm = store.lock(expected_sha256) if expected_sha256 else None
        if expected_sha256:
            store.claim(expected_sha256)
        if self._lock_cm is not None:
            self._lock_cm.__enter__()
        try:
            if self.expected_sha256:
                self.path = store.partial_path(self.expected_sha256)
                self.path.parent.mkdir(parents=True, exist_ok=True)
            else:
                self.path = store._staging_dir() / f"stream-{uuid.uuid4().hex}"
            # a published git oid is checked whatever the size (a mirror may keep large files out of LFS)
            self._hasher = MultiHasher(expected_size, git=True if expected_git_sha1 else None)
            if resume and self.expected_sha256 and self.path.exists():
                with open(self.path, "rb") as f:  # re-hash what an earlier run wrote
                    while chunk := f.read(CHUNK):
                        self._hasher.update(chunk)
                self._f = open(self.path, "ab", buffering=0)
            else:
                self._f = open(self.path, "wb", buffering=0)
        except OSError as exc:
            self._release()
            raise _storage_error(exc, "opening a blob for writing") from exc
        self._closed = False

    @property
    def already_present(self) -> bool:
        return bool(self.expected_sha256) and self.store.has(self.expected_sha256)  # type: ignore[arg-type]

    @property
    def offset(self) -> int:
        return self._hasher.size

    def write(self, chunk: bytes | bytearray | memoryview) -> None:
        if self.expected_size is not None and self._hasher.size + len(chunk) > self.expected_size:
            raise IntegrityError(
                f"received more bytes than the published size {self.expected_size}",
                details={"expected_size": self.expected_size},
            )
        self._hasher.update(chunk)
        try:
            _write_all(self._f, chunk)
        except OSError as exc:
            raise _storage_error(exc, "writing a blob") from exc

    def commit(self) -> StoredBlob:
        """Check size and digest, then move into place. On mismatch the partial bytes are deleted."""
        try:
            self._f.flush()
            os.fsync(self._f.fileno())
        except OSError as exc:
            raise _storage_error(exc, "flushing a blob") from exc
        self._f.close()
        self._closed = True
        digests = self._hasher.finish()
        try:
            if self.expected_size is not None and digests.size != self.expected_size:
                raise IntegrityError(
                    f"size is {digests.size} bytes, expected {self.expected_size}",
                    details={"expected_size": self.expected_size, "actual_size": digests.size},
                )
            if self.expected_sha256 and digests.sha256 != self.expected_sha256:
                raise IntegrityError(
                    f"sha256 is {digests.sha256}, expected {self.expected_sha256}",
                    details={"expected": self.expected_sha256, "actual": digests.sha256},
                )
            if self.expected_git_sha1 and digests.git_sha1 != self.expected_git_sha1:
                raise IntegrityError(
                    f"git blob sha1 is {digests.git_sha1}, expected {self.expected_git_sha1}",
                    details={"expected": self.expected_git_sha1, "actual": digests.git_sha1},
                )
        except IntegrityError:
            self.path.unlink(missing_ok=True)
            self._release()
            raise
        try:
            # with a known digest we already hold its lock
            return self.store._commit(self.path, digests, locked=self._lock_cm is not None)
        except OSError as exc:
            self.path.unlink(missing_ok=True)
            raise _storage_error(exc, f"storing blob {digests.sha256}") from exc
        finally:
            self._release()

    def abort(self, *, keep_partial: bool = True) -> None:
        """Stop writing; a known-digest partial is kept for a later resume unless told otherwise."""
        if not self._closed:
            self._f.close()
            self._closed = True
        if not (keep_partial and self.expected_sha256):
            self.path.unlink(missing_ok=True)
        self._release()

    def _release(self) -> None:
        if self._lock_cm is not None:
            self._lock_cm.__exit__(None, None, None)
            self._lock_cm = None

    def __enter__(self) -> "BlobWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if self._lock_cm is not None or not self._closed:
            self.abort(keep_partial=exc_type is not None and not issubclass(exc_type, IntegrityError))
