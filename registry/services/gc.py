"""``registry gc``: plan, then execute. ``--dry-run`` prints the plan and stops.

The plan removes blobs that nothing references, temp and partial files of writes that died, half-built link
folders of crashed loads, and leases of processes that died. It keeps:
- every blob a catalog file row references (models, and through them deployments: a deployed model cannot be
  removed while deployed, see services/remove.py);
- every blob named in a live lease (a pull, add or import that has not recorded yet, an export in progress:
  registry/store/leases.py);
- a partial file whose digest lock is held (a download writing it right now);
- anything younger than the grace period (a writer that predates leases, or another host's clock).

Execution re-checks each blob under its digest lock against the catalog and the live leases read at that
moment, so a pull that started after the plan was made still keeps what it claimed.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select

from registry.catalog.models import File
from registry.hashing import SHA256_RE
from registry.killpoints import killpoint
from registry.services.context import Registry
from registry.store.blobs import PARTIAL_SUFFIX
from registry.store.leases import LeaseInfo

DEFAULT_GRACE_S = 3600.0
_IN_CHUNK = 500  # digests per IN (...) query


@dataclass(frozen=True)
class GcAction:
    kind: str      # blob | partial | temp | link-folder | stale-lease
    path: str
    sha256: str | None
    size: int
    age_s: float
    reason: str


@dataclass(frozen=True)
class GcKept:
    kind: str
    path: str
    sha256: str | None
    reason: str    # young | leased by <purpose> (pid N on HOST) | being written


@dataclass(frozen=True)
class GcPlan:
    grace_seconds: float
    actions: tuple[GcAction, ...]
    kept: tuple[GcKept, ...]
    live_leases: tuple[str, ...]  # "<purpose> (pid N on HOST)" of the operations running while planning

    @property
    def bytes_to_free(self) -> int:
        return sum(a.size for a in self.actions)


@dataclass(frozen=True)
class GcResult:
    dry_run: bool
    grace_seconds: float
    plan: GcPlan
    blobs_removed: tuple[str, ...]
    bytes_freed: int
    stray_removed: tuple[str, ...]
    kept_young: int     # unreferenced or stray files younger than the grace period
    kept_leased: int    # unreferenced blobs that a running operation claims
    skipped: tuple[str, ...]  # planned, then found referenced or claimed at execution


def _describe(lease: LeaseInfo) -> str:
    return f"{lease.purpose} (pid {lease.pid} on {lease.host})"


def _claims(leases: Iterable[LeaseInfo]) -> dict[str, str]:
    out: dict[str, str] = {}
    for lease in leases:
        if lease.live:
            for sha in lease.digests:
                out.setdefault(sha, _describe(lease))
    return out


def _referenced(reg: Registry, shas: Iterable[str] | None = None) -> set[str]:
    """Digests catalog file rows reference: all of them, or those among ``shas``."""
    with reg.catalog.reader() as session:
        if shas is None:
            return set(session.scalars(select(File.blob_sha256).distinct()))
        wanted = sorted(set(shas))
        found: set[str] = set()
        for i in range(0, len(wanted), _IN_CHUNK):
            found.update(session.scalars(select(File.blob_sha256).where(
                File.blob_sha256.in_(wanted[i:i + _IN_CHUNK])).distinct()))
        return found


def _dead_link_folders(reg: Registry) -> list[Path]:
    """Half-built folders of links that a crashed load left beside the materialised models."""
    root = reg.settings.home / "materialized"
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if p.name.startswith((".tmp-", ".stale-")))


def plan_gc(reg: Registry, *, grace_seconds: float = DEFAULT_GRACE_S) -> GcPlan:
    now = time.time()
    cutoff = now - grace_seconds
    # Order matters: the store's blobs first, then the leases, then the catalog. A writer claims a digest
    # before its blob appears and releases its lease only after its catalog commit, so a blob seen in the
    # first step is either claimed by a live lease or referenced by the time we ask the catalog.
    blobs = list(reg.store.iter_blobs())
    leases = reg.store.leases()
    claims = _claims(leases)
    referenced = _referenced(reg)
    actions: list[GcAction] = []
    kept: list[GcKept] = []
    for sha, path in blobs:
        if sha in referenced:
            continue
        try:
            st = path.stat()
        except FileNotFoundError:
            continue
        if sha in claims:
            kept.append(GcKept("blob", str(path), sha, f"leased by {claims[sha]}"))
        elif st.st_mtime > cutoff:
            kept.append(GcKept("blob", str(path), sha, "young"))
        else:
            actions.append(GcAction("blob", str(path), sha, st.st_size, now - st.st_mtime,
                                    "no catalog file references it"))
    any_live = any(lease.live for lease in leases)
    for path in reg.store.stray_files() + _dead_link_folders(reg):
        try:
            st = path.stat()
        except FileNotFoundError:
            continue
        kind = ("link-folder" if path.is_dir() else "partial" if path.name.endswith(PARTIAL_SUFFIX) else "temp")
        digest = path.name[: -len(PARTIAL_SUFFIX)] if kind == "partial" else None
        if digest is not None and SHA256_RE.match(digest):
            with reg.store.try_lock(digest) as free:
                if not free:
                    kept.append(GcKept(kind, str(path), digest, "being written"))
                    continue
        if st.st_mtime > cutoff:
            kept.append(GcKept(kind, str(path), digest, "young"))
        elif kind == "temp" and any_live:
            # temp files carry no digest: while any operation runs, one of them may own it
            kept.append(GcKept(kind, str(path), None, "an operation is running"))
        else:
            reason = {"partial": "a download that stopped (resumable, but abandoned)",
                      "temp": "an interrupted write", "link-folder": "a crashed load's half-built links"}[kind]
            actions.append(GcAction(kind, str(path), digest, 0 if kind == "link-folder" else st.st_size,
                                    now - st.st_mtime, reason))
    for lease in leases:
        if not lease.live:
            actions.append(GcAction("stale-lease", lease.path, None, 0, now - (lease.started or now),
                                    f"{_describe(lease)} ended without releasing it"))
    return GcPlan(grace_seconds, tuple(actions), tuple(kept),
                  tuple(_describe(lease) for lease in leases if lease.live))


def _lease_sizes(reg: Registry) -> tuple[tuple[str, int], ...]:
    folder = reg.store.root / "leases"
    if not folder.is_dir():
        return ()
    out = []
    for p in sorted(folder.iterdir()):
        try:
            out.append((p.name, p.stat().st_size))
        except FileNotFoundError:
            continue
    return tuple(out)


def execute_gc(reg: Registry, plan: GcPlan) -> GcResult:
    """Carry out ``plan``, re-checking each blob at the moment it goes."""
    candidates = [a.sha256 for a in plan.actions if a.kind == "blob" and a.sha256]
    now_referenced = _referenced(reg, candidates) if candidates else set()
    removed: list[str] = []
    stray: list[str] = []
    skipped: list[str] = []
    freed = 0
    snapshot, claims = _lease_sizes(reg), _claims(reg.store.leases())
    for action in plan.actions:
        if action.kind == "blob":
            sha = action.sha256 or ""
            if sha in now_referenced:
                skipped.append(sha)
                continue
            with reg.store.lock(sha):
                # leases only grow while they live: re-read them only when one changed since the last look
                current = _lease_sizes(reg)
                if current != snapshot:
                    snapshot, claims = current, _claims(reg.store.leases())
                if sha in claims:
                    skipped.append(sha)
                    continue
                if reg.store.remove_locked(sha):
                    removed.append(sha)
                    freed += action.size
                    killpoint("gc:after-blob-remove")
            continue
        path = Path(action.path)
        if action.kind == "stale-lease":
            path.unlink(missing_ok=True)
            continue
        if action.kind == "partial" and action.sha256:
            with reg.store.try_lock(action.sha256) as free:
                if not free:
                    skipped.append(action.path)
                    continue
                path.unlink(missing_ok=True)
        elif action.kind == "link-folder":
            shutil.rmtree(path, ignore_errors=True)  # links only: the blobs they point at stay
        else:
            path.unlink(missing_ok=True)
        stray.append(action.path)
        freed += action.size
    killpoint("gc:before-log")
    reg.stat_cache.forget(removed)
    if removed or stray:
        reg.log_now("gc", "store", blobs_removed=len(removed), stray_removed=len(stray), bytes_freed=freed,
                    skipped=len(skipped))
    return _result(plan, dry_run=False, removed=removed, stray=stray, freed=freed, skipped=skipped)


def _result(plan: GcPlan, *, dry_run: bool, removed: list[str], stray: list[str], freed: int,
            skipped: list[str]) -> GcResult:
    return GcResult(
        dry_run=dry_run, grace_seconds=plan.grace_seconds, plan=plan, blobs_removed=tuple(removed),
        bytes_freed=freed, stray_removed=tuple(stray),
        kept_young=sum(k.reason == "young" for k in plan.kept),
        kept_leased=sum(k.reason.startswith("leased") for k in plan.kept), skipped=tuple(skipped))


def collect_garbage(reg: Registry, *, dry_run: bool = False, grace_seconds: float = DEFAULT_GRACE_S) -> GcResult:
    plan = plan_gc(reg, grace_seconds=grace_seconds)
    if dry_run:
        return _result(plan, dry_run=True, removed=[a.sha256 for a in plan.actions if a.kind == "blob" and a.sha256],
                       stray=[a.path for a in plan.actions if a.kind in ("partial", "temp", "link-folder")],
                       freed=plan.bytes_to_free, skipped=[])
    killpoint("gc:after-plan")
    return execute_gc(reg, plan)

