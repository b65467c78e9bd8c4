"""``registry undeploy NAME --target DIR``: remove a copy that ``deploy`` wrote and recorded, and say so.

Refused when no live deployment of NAME is recorded at DIR on this node (the registry removes only what it
wrote). What it removes is exactly what deploy wrote there: the model's files (``dir``), or in an HF cache the
model's snapshot links, the refs naming that commit and the blobs no remaining snapshot links to, and a base
repo's snapshot only when no other live deployment in that cache needs it. Files it did not write stay, and so
does their folder. A copy someone changed is refused unless ``force``; a target replaced by a symlink or a file
is never touched (``force`` then only drops the record). Files first, catalog second: a crash in between leaves
the record, which ``audit --verify`` then shows as drifted or missing, and a second undeploy finishes the job.
"""

from __future__ import annotations

import datetime as dt
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select, update

from registry.catalog.models import Deployment, Model
from registry.catalog.queries import split_ref
from registry.errors import ConflictError, ModelNotFound, StorageError
from registry.paths import safe_join
from registry.services.audit import expected_files
from registry.services.audit_signature import SIGNATURE_FILES
from registry.services.context import Registry
from registry.services.copy_check import CopyCheck, ExpectedFile, check_copy, deployed_stat_cache
from registry.services.deploy import cache_folder_name


@dataclass(frozen=True)
class UndeployResult:
    deployment_id: int
    name: str
    commit: str
    node: str
    layout: str
    path: str
    removed: tuple[str, ...]   # files, links and folders removed
    kept: tuple[str, ...]      # what stays: files nobody recorded, snapshots another deployment needs
    already_gone: bool
    forced: bool


@dataclass(frozen=True)
class _Target:
    deployment_id: int
    model_id: int
    commit: str
    layout: str
    path: str


def _covers(row_path: str, layout: str, target: Path) -> bool:
    p = Path(row_path)
    return p == target or (layout == "hf-cache" and len(p.parents) >= 3 and p.parents[2] == target)


def _find(reg: Registry, name: str, rev: str | None, target: Path, node: str) -> tuple[_Target, list[_Target]]:
    """The deployment to remove, and the other live ones in the same place on this node (an HF cache is shared)."""
    with reg.catalog.reader() as session:
        if session.scalar(select(Model.id).where(Model.name == name).limit(1)) is None:
            raise ModelNotFound(f"no model named {name!r} in the catalog; see `registry audit`", details={"name": name})
        live = session.execute(
            select(Deployment.id, Deployment.model_id, Deployment.commit_sha, Deployment.layout, Deployment.path,
                   Model.name)
            .join(Model, Model.id == Deployment.model_id)
            .where(Deployment.node == node, Deployment.removed_at.is_(None)).order_by(Deployment.id)).all()
    mine = [_Target(i, m, c, lay, p) for i, m, c, lay, p, n in live
            if n == name and (rev is None or c.startswith(rev)) and _covers(p, lay, target)]
    if not mine:
        recorded = sorted({p for _, _, _, _, p, n in live if n == name})
        hint = ("; recorded on this node: " + ", ".join(recorded)) if recorded else ""
        raise ConflictError(
            f"no live deployment of {name}{'@' + rev if rev else ''} is recorded at {target} on node {node}: "
            f"undeploy removes only copies the registry wrote and recorded{hint} (see `registry audit --node {node}`)",
            details={"name": name, "target": str(target), "node": node, "recorded": recorded})
    if len({t.commit for t in mine}) > 1:
        raise ConflictError(f"{target} holds several revisions of {name} ({', '.join(t.commit[:12] for t in mine)}); "
                            f"say which: registry undeploy {name}@REVISION --target {target}",
                            details={"commits": [t.commit for t in mine]})
    chosen = mine[-1]
    others = [_Target(i, m, c, lay, p) for i, m, c, lay, p, _ in live
              if i != chosen.deployment_id and lay == chosen.layout and _covers(p, lay, _root(chosen))]
    return chosen, others


def _root(t: _Target) -> Path:
    return Path(t.path).parents[2] if t.layout == "hf-cache" else Path(t.path)


def _refuse_if_unsafe(check: CopyCheck, target: Path, force: bool) -> None:
    if check.drift.changed and not force:
        raise ConflictError(
            f"{target} was changed since it was deployed ({'; '.join(check.drift.changed[:10])}); nothing was removed: "
            "keep what you need, then pass --force to remove the deployed files anyway",
            details={"changed": list(check.drift.changed)})


def _rmdir_empty(root: Path, removed: list[str]) -> None:
    """Remove the empty folders under ``root`` (children first), and ``root`` if it ends empty."""
    if not root.is_dir() or root.is_symlink():
        return
    for dirpath, _dirs, _files in os.walk(root, topdown=False, followlinks=False):
        _try_rmdir(Path(dirpath), removed)


def _left(root: Path) -> list[str]:
    out: list[str] = []
    if root.is_dir():
        for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
            out.extend(str(Path(dirpath) / n) for n in sorted(filenames + [d for d in dirnames
                                                                        if (Path(dirpath) / d).is_symlink()]))
    return out


def _remove_dir_copy(root: Path, files: list[ExpectedFile], removed: list[str], kept: list[str]) -> None:
    # deploy also writes the model's signature beside its files (services/audit_signature.py)
    for p in [safe_join(root, f.path) for f in files if f.own] + [root / name for name in sorted(SIGNATURE_FILES)]:
        try:
            mode = os.lstat(p).st_mode
        except FileNotFoundError:
            continue
        if stat.S_ISREG(mode) or stat.S_ISLNK(mode):  # a symlink is unlinked itself, never what it points to
            p.unlink()
            removed.append(str(p))
    _rmdir_empty(root, removed)
    kept.extend(_left(root))


def _try_rmdir(path: Path, removed: list[str]) -> None:
    try:
        path.rmdir()
        removed.append(str(path) + "/")
    except OSError:
        pass


def _linked_blobs(folder: Path) -> set[str]:
    """Blob names that some snapshot of this repo folder still links to."""
    names: set[str] = set()
    snaps = folder / "snapshots"
    if not snaps.is_dir():
        return names
    for dirpath, _dirs, filenames in os.walk(snaps, followlinks=False):
        for name in filenames:
            p = Path(dirpath) / name
            if p.is_symlink():
                names.add(Path(os.readlink(p)).name)
    return names


def _remove_cache_repo(folder: Path, commit: str, files: list[ExpectedFile], removed: list[str],
                       kept: list[str]) -> None:
    snap = folder / "snapshots" / commit
    signature_blobs: set[str] = set()
    for name in sorted(SIGNATURE_FILES):  # deploy links the model's signature from a blob of its own
        p = snap / name
        if p.is_symlink() and Path(os.readlink(p)).parent.name == "blobs":
            signature_blobs.add(Path(os.readlink(p)).name)
    for p in [safe_join(snap, f.path) for f in files] + [snap / name for name in sorted(SIGNATURE_FILES)]:
        if os.path.lexists(p) and (p.is_symlink() or p.is_file()):
            p.unlink()
            removed.append(str(p))
    _rmdir_empty(snap, removed)
    if snap.exists():
        kept.extend(_left(snap))
        return
    refs = folder / "refs"
    if refs.is_dir():
        for ref in sorted(p for p in refs.rglob("*") if p.is_file() and not p.is_symlink()):
            if ref.read_text(errors="replace").strip() == commit:
                ref.unlink()
                removed.append(str(ref))
    still = _linked_blobs(folder)
    for etag in sorted(({f.etag for f in files} | signature_blobs) - still):
        blob = folder / "blobs" / etag
        if os.path.lexists(blob) and not blob.is_symlink():
            blob.unlink()
            removed.append(str(blob))
    for sub in ("refs", "blobs", "snapshots"):
        _rmdir_empty(folder / sub, removed)
    _try_rmdir(folder, removed)


def undeploy(reg: Registry, spec: str, target: Path | str, *, node: str | None = None,
             force: bool = False) -> UndeployResult:
    name, rev = split_ref(spec)
    target = Path(target).expanduser().absolute()
    node = node or reg.settings.host
    chosen, others = _find(reg, name, rev, target, node)
    with reg.catalog.reader() as session:
        files = expected_files(session, [chosen.model_id] + [o.model_id for o in others])
    mine = files.get(chosen.model_id, [])
    check = check_copy(chosen.layout, chosen.path, mine, deployed_stat_cache(reg.settings.home))
    removed: list[str] = []
    kept: list[str] = []
    gone = check.state == "missing"
    if check.drift.target and not gone:
        if not force:
            raise ConflictError(f"{check.drift.target}: the registry did not write that, so undeploy leaves it alone; "
                                "remove it yourself, or pass --force to drop only the catalog record",
                                details={"target": check.drift.target})
        kept.append(check.drift.target)
    elif not gone:
        _refuse_if_unsafe(check, target, force)
        try:
            if chosen.layout == "dir":
                _remove_dir_copy(Path(chosen.path), mine, removed, kept)
            else:
                root = _root(chosen)
                needed = {(f.repo, f.commit) for o in others for f in files.get(o.model_id, [])}
                by_repo: dict[tuple[str, str], list[ExpectedFile]] = {}
                for f in mine:
                    by_repo.setdefault((f.repo, f.commit), []).append(f)
                for (repo, commit), repo_files in sorted(by_repo.items()):
                    if (repo, commit) in needed:
                        kept.append(f"{repo}@{commit[:12]} (another deployment in {root} uses it)")
                        continue
                    _remove_cache_repo(root / cache_folder_name(repo), commit, repo_files, removed, kept)
        except OSError as exc:
            raise StorageError(f"undeploying {chosen.path} failed part way: {exc}; the deployment stays recorded "
                               "(`registry audit --verify` shows what is left); fix the cause and run undeploy again "
                               "(with --force if it says the copy changed)") from exc
    with reg.catalog.session() as session:
        session.execute(update(Deployment).where(Deployment.id == chosen.deployment_id,
                                                 Deployment.removed_at.is_(None))
                        .values(removed_at=dt.datetime.now(dt.timezone.utc)))
        reg.log(session, "undeploy", name, commit=chosen.commit, node=node, path=chosen.path, layout=chosen.layout,
                removed=len(removed), kept=kept[:50], already_gone=gone, forced=force)
    return UndeployResult(chosen.deployment_id, name, chosen.commit, node, chosen.layout, chosen.path,
                          tuple(removed), tuple(kept), gone, force)
