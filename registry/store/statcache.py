"""Stat cache: (size, mtime, ctime, inode) of each blob as last proven by hashing.

A fast verify of an unchanged store is one ``stat`` per blob and no hashing. ctime is in the key
because no user-level call can set it back: any write to a blob (even one that restores mtime)
makes the next fast verify re-hash it. The cache is per node, kept beside the blobs it describes.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from registry.errors import StorageError


@dataclass(frozen=True)
class StatKey:
    size: int
    mtime_ns: int
    ctime_ns: int
    inode: int

    @classmethod
    def of(cls, st: os.stat_result) -> "StatKey":
        return cls(st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)


# What SQLite says of a file that is not (any more) a readable database: the cache is then rebuilt.
_DAMAGED = ("file is not a database", "malformed", "no such table", "no such column", "table stat has")


def _damaged(exc: sqlite3.Error) -> bool:
    return isinstance(exc, sqlite3.DatabaseError) and any(m in str(exc).lower() for m in _DAMAGED)


class StatCache:
    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._local = threading.local()
        # what happened that a user should hear of (a damaged cache rebuilt); the CLI prints these
        self.notes: list[str] = []

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            try:
                conn = self._open()
            except sqlite3.DatabaseError as exc:
                if not _damaged(exc):
                    raise
                self._rebuild(exc)
                conn = self._open()
            self._local.conn = conn
        return conn

    def _open(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute(
                "CREATE TABLE IF NOT EXISTS stat (sha256 TEXT PRIMARY KEY, size INTEGER, mtime_ns INTEGER,"
                " ctime_ns INTEGER, inode INTEGER, blake3 TEXT, checked_at REAL)"
            )
            conn.execute("SELECT sha256, size, mtime_ns, ctime_ns, inode, blake3 FROM stat LIMIT 1").fetchall()
        except BaseException:
            conn.close()
            raise
        return conn

    def _rebuild(self, exc: sqlite3.Error) -> None:
        """The cache is only a cache: a damaged one is deleted and starts empty (the next verify re-hashes)."""
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None
        for suffix in ("", "-wal", "-shm", "-journal"):
            Path(str(self.path) + suffix).unlink(missing_ok=True)
        self.notes.append(f"the stat cache {self.path} was damaged ({exc}); it is only a cache of proven blob "
                          "stats, so it was deleted and rebuilt empty: the next verify hashes every blob once")

    def _query(self, sql: str, args: tuple = ()) -> list[tuple]:
        try:
            return self._conn().execute(sql, args).fetchall()
        except sqlite3.DatabaseError as exc:
            if not _damaged(exc):
                raise
            self._rebuild(exc)
            return self._conn().execute(sql, args).fetchall()

    def load(self) -> dict[str, tuple[StatKey, str]]:
        rows = self._query("SELECT sha256, size, mtime_ns, ctime_ns, inode, blake3 FROM stat")
        return {r[0]: (StatKey(r[1], r[2], r[3], r[4]), r[5]) for r in rows}

    def get(self, sha256: str) -> tuple[StatKey, str] | None:
        rows = self._query("SELECT size, mtime_ns, ctime_ns, inode, blake3 FROM stat WHERE sha256 = ?", (sha256,))
        r = rows[0] if rows else None
        return None if r is None else (StatKey(r[0], r[1], r[2], r[3]), r[4])

    def record(self, entries: list[tuple[str, StatKey, str]]) -> None:
        if not entries:
            return
        try:
            self._record(entries)
        except sqlite3.DatabaseError as exc:
            if not _damaged(exc):
                raise
            self._rebuild(exc)
            self._record(entries)

    def _record(self, entries: list[tuple[str, StatKey, str]]) -> None:
        now = time.time()
        conn = self._conn()
        try:
            conn.execute("BEGIN")
            conn.executemany(
                "INSERT OR REPLACE INTO stat VALUES (?,?,?,?,?,?,?)",
                [(sha, k.size, k.mtime_ns, k.ctime_ns, k.inode, b3, now) for sha, k, b3 in entries],
            )
            conn.execute("COMMIT")
        except sqlite3.OperationalError as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            if "full" in str(exc):
                raise StorageError(f"no space left for the stat cache {self.path}; free space and run the command "
                                   "again (nothing partial was recorded)") from exc
            raise

    def forget(self, shas: list[str]) -> None:
        if not shas:
            return
        try:
            self._conn().executemany("DELETE FROM stat WHERE sha256 = ?", [(s,) for s in shas])
        except sqlite3.DatabaseError as exc:
            if not _damaged(exc):
                raise
            self._rebuild(exc)  # an empty cache forgets everything
