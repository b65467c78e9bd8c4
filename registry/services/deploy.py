"""``registry deploy NAME --target DIR``: put a registered model on a node, and record where it went.

Layouts:
- ``hf-cache``: ``DIR/models--org--name/{blobs,snapshots,refs}`` exactly as huggingface_hub writes it (blobs named
  by etag: sha256 for LFS files, git sha1 otherwise; relative symlinks from the snapshot), one such folder per repo
  the model needs (an adapter's base too), so ``HF_HUB_OFFLINE=1 HF_HUB_CACHE=DIR`` loads it by name.
- ``dir``: a plain folder holding the model's own repo files.

Never partial: blobs are written under a temp name and renamed; a new snapshot or folder is assembled aside and
renamed into place in one step. Hard links from the store when it is on the same filesystem, copies otherwise.
``audit`` (services/audit.py) compares what the catalog says is deployed with what is on disk and with what is
registered now; ``undeploy`` (services/undeploy.py) removes a copy this module wrote.
"""

from __future__ import annotations

import datetime as dt
import errno
import os
import shutil
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select

from registry.catalog import states
from registry.catalog.models import LAYOUTS, Deployment, Ref
from registry.catalog.queries import find_model
from registry.errors import ConflictError, StorageError, UsageError
from registry.hashing import git_blob_sha1
from registry.paths import safe_join
from registry.services.context import Registry
from registry.services.trust import deploy_signatures
from registry.signing.oms import SIGNATURE_FILE


@dataclass(frozen=True)
class PlannedFile:
    path: str
    size: int
    sha256: str
    blake3: str
    etag: str


@dataclass(frozen=True)
class PlannedRepo:
    repo_id: str
    commit: str
    refs: tuple[str, ...]
    files: tuple[PlannedFile, ...]
    signature: bytes | None = None  # the model.sig written beside the files (it lists exactly them)


@dataclass(frozen=True)
class DeployedRepo:
    repo_id: str
    commit: str
    path: str
    files: int
    bytes: int
    linked: int
    copied: int
    reused: int


@dataclass(frozen=True)
class DeployResult:
    deployment_id: int
    name: str
    commit: str
    root_digest: str
    layout: str
    node: str
    actor: str
    target: str
    path: str
    repos: tuple[DeployedRepo, ...]
    not_included: tuple[str, ...]  # repos a `dir` deployment leaves out (deploy them too, or use hf-cache)
    signed: tuple[str, ...] = ()   # repo@commit of each folder that got a model.sig


def cache_folder_name(repo_id: str) -> str:
    return "models--" + repo_id.replace("/", "--")


@dataclass(frozen=True)
class _Chosen:
    model_id: int
    name: str
    commit: str
    root_digest: str


def _plan(reg: Registry, spec: str, as_base: bool = False, accept: tuple[str, ...] = states.SERVED
          ) -> tuple[_Chosen, list[PlannedRepo]]:
    from registry.services.load import refuse_base

    with reg.catalog.reader() as session:
        model = find_model(session, spec)
        label = f"{model.name}@{model.revision.commit_sha[:12]}"
        if model.manifest.get("base_only") and not as_base:  # first: it says more than "not registered"
            raise refuse_base(reg, model.name, model.revision.commit_sha, "deploy")
        if model.state not in accept:
            why = f" ({model.state_reason})" if model.state_reason else ""
            raise ConflictError(
                f"{label} is {model.state}{why}; only registered models are deployed: run `registry register` first"
                if model.state != states.QUARANTINED else
                f"{label} is quarantined{why}; quarantined models are never deployed. To lift it: "
                + states.lifted_by(model.state_reason, model.name),
                details={"name": model.name, "state": model.state},
            )
        repos: dict[tuple[str, str], dict[str, PlannedFile]] = {}
        refs: dict[tuple[str, str], tuple[str, ...]] = {}
        for comp in model.components:
            rev = comp.revision
            key = (rev.repo.repo_id, rev.commit_sha)
            files = repos.setdefault(key, {})
            for f in comp.files:
                files[f.path] = PlannedFile(f.path, f.size, f.blob_sha256, f.blob.blake3,
                                            f.blob_sha256 if f.lfs else f.git_oid)
            if key not in refs:
                names = dict(session.execute(select(Ref.name, Ref.revision_id).where(Ref.repo_id == rev.repo_id)).all())
                here = tuple(sorted(n for n, r in names.items() if r == rev.id))
                refs[key] = here if "main" in names else tuple(sorted({*here, "main"}))
        own = (model.name, model.revision.commit_sha)
        order = [k for k in repos if k != own] + ([own] if own in repos else [])
        signatures = deploy_signatures(reg, session, model)  # refuses an untrusted model under a trust policy
        planned = [PlannedRepo(k[0], k[1], refs[k], tuple(sorted(repos[k].values(), key=lambda p: p.path)),
                               signatures.get(k)) for k in order]
        chosen = _Chosen(model.id, model.name, model.revision.commit_sha, model.root_digest)
    for repo in planned:
        for f in repo.files:
            if not reg.store.has(f.sha256):
                raise StorageError(f"{repo.repo_id}: {f.path}: blob {f.sha256} is not in the store; "
                                   "run `registry verify` (nothing was deployed)", details={"path": f.path})
    return chosen, planned


class _Materializer:
    """Link (same filesystem) or copy a store blob to a destination, atomically."""

    def __init__(self, reg: Registry) -> None:
        self.reg = reg
        self.linked = self.copied = self.reused = 0

    def put(self, sha256: str, size: int, dest: Path) -> None:
        if dest.is_file() and not dest.is_symlink() and dest.stat().st_size == size:
            self.reused += 1  # an etag-named blob already there holds these bytes
            return
        src = self.reg.store.path_for(sha256)
        tmp = dest.with_name(f".{dest.name}.{uuid.uuid4().hex[:8]}.incomplete")
        try:
            try:
                os.link(src, tmp)
                self.linked += 1
            except OSError as exc:
                if exc.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK, errno.EACCES):
                    raise
                shutil.copyfile(src, tmp)
                self.copied += 1
            os.replace(tmp, dest)
            # rename() of two links to one inode is a no-op that leaves the source name in place
            # (POSIX): a concurrent deploy that linked the same blob first makes ours exactly that.
            tmp.unlink(missing_ok=True)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            raise StorageError(f"cannot write {dest}: {exc} (nothing partial was left)") from exc


def _symlink_atomic(target: str, link: Path) -> None:
    tmp = link.with_name(f".{link.name}.{uuid.uuid4().hex[:8]}.link")
    os.symlink(target, tmp)
    os.replace(tmp, link)


def _write_file(path: Path, data: bytes) -> None:
    """A small read-only file (model.sig), written aside and renamed; an equal one already there is kept."""
    if path.is_file() and not path.is_symlink() and path.read_bytes() == data:
        return
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.incomplete")
    try:
        tmp.write_bytes(data)
        tmp.chmod(0o444)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _link_snapshot(snapshot: Path, files: Sequence[PlannedFile], blobs: Path) -> None:
    for f in files:
        link = safe_join(snapshot, f.path)
        link.parent.mkdir(parents=True, exist_ok=True)
        target = os.path.relpath(blobs / f.etag, link.parent)
        if not (link.is_symlink() and os.readlink(link) == target):
            _symlink_atomic(target, link)


def _deploy_cache_repo(root: Path, repo: PlannedRepo, mat: _Materializer) -> DeployedRepo:
    before = (mat.linked, mat.copied, mat.reused)
    folder = root / cache_folder_name(repo.repo_id)
    blobs = folder / "blobs"
    blobs.mkdir(parents=True, exist_ok=True)
    (folder / "snapshots").mkdir(exist_ok=True)
    for f in repo.files:
        mat.put(f.sha256, f.size, blobs / f.etag)
    links = repo.files
    if repo.signature is not None:
        # model.sig as huggingface_hub stores a regular file: a blob named by its git sha1, linked from the snapshot
        etag = git_blob_sha1(repo.signature)
        _write_file(blobs / etag, repo.signature)
        links = (*repo.files, PlannedFile(SIGNATURE_FILE, len(repo.signature), "", "", etag))
    final = folder / "snapshots" / repo.commit
    staging = folder / f".registry-staging-{uuid.uuid4().hex[:8]}"
    try:
        if not final.exists():
            _link_snapshot(staging / repo.commit, links, blobs)
            try:
                os.rename(staging / repo.commit, final)  # the snapshot appears whole
            except OSError as exc:
                if exc.errno not in (errno.EEXIST, errno.ENOTEMPTY) or not final.is_dir():
                    raise
        # Already there (an earlier deploy, a concurrent one, or huggingface_hub's own download): each link is
        # replaced atomically, so readers see the old link or the new one, never a missing file.
        _link_snapshot(final, links, blobs)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    for name in repo.refs:
        try:
            ref_file = safe_join(folder / "refs", name)
        except ValueError:
            continue  # a ref name that cannot be a file name (the commit's snapshot is still there)
        _write_atomic(ref_file, repo.commit)
    linked, copied, reused = (mat.linked - before[0], mat.copied - before[1], mat.reused - before[2])
    return DeployedRepo(repo.repo_id, repo.commit, str(final), len(repo.files), sum(f.size for f in repo.files),
                        linked, copied, reused)


def _deploy_dir(target: Path, repo: PlannedRepo, mat: _Materializer) -> DeployedRepo:
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise ConflictError(f"{target} exists and is not an empty folder; remove it or choose another --target",
                            details={"target": str(target)})
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = target.parent / f".{target.name}.registry-staging-{uuid.uuid4().hex[:8]}"
    try:
        for f in repo.files:
            dest = safe_join(staging, f.path)
            dest.parent.mkdir(parents=True, exist_ok=True)
            mat.put(f.sha256, f.size, dest)
        if repo.signature is not None:
            _write_file(staging / SIGNATURE_FILE, repo.signature)
        if target.exists():
            target.rmdir()
        os.rename(staging, target)  # the folder appears whole
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return DeployedRepo(repo.repo_id, repo.commit, str(target), len(repo.files), sum(f.size for f in repo.files),
                        mat.linked, mat.copied, mat.reused)


def deploy(reg: Registry, spec: str, target: Path | str, *, layout: str = "hf-cache", node: str | None = None,
           as_base: bool = False, unregistered: bool = False) -> DeployResult:
    """``unregistered``: also a verified model (``pull --local-dir``: a download, which needs no smoke proof);
    a quarantined one never."""
    if layout not in LAYOUTS:
        raise UsageError(f"--layout {layout!r}: choose one of {', '.join(LAYOUTS)}")
    target = Path(target).expanduser().absolute()
    if target.exists() and not target.is_dir():
        raise UsageError(f"--target {target} is a file; give a folder", details={"target": str(target)})
    model, planned = _plan(reg, spec, as_base, states.LOADABLE if unregistered else states.SERVED)
    node = node or reg.settings.host
    mat = _Materializer(reg)
    not_included: tuple[str, ...] = ()
    try:
        if layout == "hf-cache":
            target.mkdir(parents=True, exist_ok=True)
            done = tuple(_deploy_cache_repo(target, repo, mat) for repo in planned)
            path = done[-1].path
        else:
            own = [r for r in planned if r.repo_id == model.name]
            not_included = tuple(f"{r.repo_id}@{r.commit}" for r in planned if r.repo_id != model.name)
            done = (_deploy_dir(target, own[0], mat),)
            path = str(target)
    except OSError as exc:
        raise StorageError(f"deploying to {target} failed: {exc}") from exc
    with reg.catalog.session() as session:
        for old in session.scalars(select(Deployment).where(Deployment.node == node, Deployment.path == path,
                                                            Deployment.removed_at.is_(None))):
            old.removed_at = dt.datetime.now(dt.timezone.utc)
        row = Deployment(model_id=model.model_id, node=node, path=path, layout=layout, commit_sha=model.commit,
                         root_digest=model.root_digest, actor=reg.settings.actor)
        session.add(row)
        session.flush()
        reg.log(session, "deploy", model.name, commit=model.commit, root_digest=model.root_digest,
                node=node, path=path, layout=layout, linked=mat.linked, copied=mat.copied)
        deployment_id = row.id
    signed = tuple(f"{r.repo_id}@{r.commit}" for r in planned if r.signature is not None
                   and (layout == "hf-cache" or r.repo_id == model.name))
    return DeployResult(deployment_id, model.name, model.commit, model.root_digest, layout, node,
                        reg.settings.actor, str(target), path, done, not_included, signed)

