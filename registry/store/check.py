"""Check blobs against the sizes and blake3 digests the catalog expects.

Fast mode trusts the stat cache (no hashing for an unchanged blob); deep mode re-hashes every
blob with blake3 on every core.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Literal, Protocol

from registry.hashing import blake3_file
from registry.store.blobs import BlobStore
from registry.store.statcache import StatCache, StatKey

_LARGE = 64 * 1024 * 1024

Status = Literal["ok", "missing", "changed"]


@dataclass(frozen=True)
class ExpectedBlob:
    sha256: str
    size: int
    blake3: str


@dataclass(frozen=True)
class BlobCheck:
    sha256: str
    status: Status
    reason: str | None = None
    hashed: bool = False


class HashProgress(Protocol):
    """What check_blobs reports while hashing (a subset of the CLI's progress bars' interface)."""

    def begin(self, total_bytes: int, files: int) -> None: ...
    def advance(self, key: str, n: int) -> None: ...
    def end(self) -> None: ...


def check_blobs(store: BlobStore, cache: StatCache, expected: Sequence[ExpectedBlob], *, deep: bool,
                progress: HashProgress | None = None) -> list[BlobCheck]:
    known = {} if deep else cache.load()
    results: dict[str, BlobCheck] = {}
    to_hash: list[tuple[ExpectedBlob, StatKey]] = []
    for blob in {b.sha256: b for b in expected}.values():
        try:
            st = os.stat(store.path_for(blob.sha256))
        except FileNotFoundError:
            results[blob.sha256] = BlobCheck(blob.sha256, "missing", "blob not in the store")
            continue
        key = StatKey.of(st)
        if key.size != blob.size:
            results[blob.sha256] = BlobCheck(blob.sha256, "changed", f"size is {key.size}, expected {blob.size}")
            continue
        cached = known.get(blob.sha256)
        if cached is not None and cached[0] == key and cached[1] == blob.blake3:
            results[blob.sha256] = BlobCheck(blob.sha256, "ok")
            continue
        to_hash.append((blob, key))

    def rehash(item: tuple[ExpectedBlob, StatKey], threads: int | None) -> tuple[ExpectedBlob, StatKey, str]:
        blob, key = item
        try:
            actual = blake3_file(store.path_for(blob.sha256), threads=threads)
        except FileNotFoundError:
            actual = "missing"  # removed between the stat and the hash
        if progress is not None:
            progress.advance("verify", blob.size)
        return blob, key, actual

    # One blob per core, one thread each (streaming separate files beats splitting one file across
    # cores); smallest first, so the biggest blob comes last and gets every core (blake3's own
    # threads) while the other workers drain.
    queue_ = sorted(to_hash, key=lambda i: i[0].size)
    take = threading.Lock()

    def worker() -> list[tuple[ExpectedBlob, StatKey, str]]:
        done = []
        while True:
            with take:
                if not queue_:
                    return done
                item = queue_.pop(0)
                last = not queue_
            done.append(rehash(item, None if last and item[0].size >= _LARGE else 1))

    if progress is not None and to_hash:
        progress.begin(sum(b.size for b, _ in to_hash), len(to_hash))
    try:
        with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
            futures = [pool.submit(worker) for _ in range(os.cpu_count() or 2)]
            hashed = [h for f in futures for h in f.result()]
    finally:
        if progress is not None and to_hash:
            progress.end()

    proven: list[tuple[str, StatKey, str]] = []
    for blob, key, actual in hashed:
        if actual == blob.blake3:
            results[blob.sha256] = BlobCheck(blob.sha256, "ok", hashed=True)
            proven.append((blob.sha256, key, actual))
        elif actual == "missing":
            results[blob.sha256] = BlobCheck(blob.sha256, "missing", "blob not in the store", hashed=True)
        else:
            results[blob.sha256] = BlobCheck(
                blob.sha256, "changed", f"blake3 is {actual}, expected {blob.blake3}", hashed=True
            )
    cache.record(proven)
    cache.forget([s for s, r in results.items() if r.status != "ok"])
    return [results[s] for s in sorted(results)]
