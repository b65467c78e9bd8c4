"""``registry gc``: delete blobs no catalog file references, and temp/partial files of dead writes.

A pull or import writes blobs before its one catalog transaction, so a young unreferenced blob may
belong to a pull still running: only files older than the grace period are removed.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select

from registry.catalog.models import File
from registry.services.context import Registry

DEFAULT_GRACE_S = 3600.0


@dataclass(frozen=True)
class GcResult:
    dry_run: bool
    grace_seconds: float
    blobs_removed: tuple[str, ...]
    bytes_freed: int
    stray_removed: tuple[str, ...]
    kept_young: int  # unreferenced or stray files younger than the grace period


def _dead_link_folders(reg: Registry) -> list[Path]:
    """Half-built folders of links that a crashed load left beside the materialised models."""
    root = reg.settings.home / "materialized"
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if p.name.startswith((".tmp-", ".stale-")))


def collect_garbage(reg: Registry, *, dry_run: bool = False, grace_seconds: float = DEFAULT_GRACE_S) -> GcResult:
    with reg.catalog.reader() as session:
        referenced = set(session.scalars(select(File.blob_sha256).distinct()))
    cutoff = time.time() - grace_seconds
    removed: list[str] = []
    freed = 0
    young = 0
    for sha, path in reg.store.iter_blobs():
        if sha in referenced:
            continue
        st = path.stat()
        if st.st_mtime > cutoff:
            young += 1
            continue
        if not dry_run and not reg.store.remove(sha):
            continue
        removed.append(sha)
        freed += st.st_size
    reg.stat_cache.forget(removed if not dry_run else [])
    stray: list[str] = []
    for path in reg.store.stray_files() + _dead_link_folders(reg):
        try:
            st = path.stat()
        except FileNotFoundError:
            continue
        if st.st_mtime > cutoff:
            young += 1
            continue
        is_dir = path.is_dir()
        if not dry_run:
            if is_dir:
                shutil.rmtree(path, ignore_errors=True)  # links only: the blobs they point at stay
            else:
                path.unlink(missing_ok=True)
        stray.append(str(path))
        freed += 0 if is_dir else st.st_size
    if not dry_run and (removed or stray):
        reg.log_now("gc", "store", blobs_removed=len(removed), stray_removed=len(stray), bytes_freed=freed)
    return GcResult(dry_run, grace_seconds, tuple(removed), freed, tuple(stray), young)
