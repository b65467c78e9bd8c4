"""Read-only queries behind ``registry serve``: what the mirror shows of a repo, and where a file's bytes are.

Visibility: a revision is served only while some ``registered`` model uses it (as its own revision or as a
component, e.g. an adapter's base) and no ``quarantined`` model sits on it. That is asked of the catalog on
every request, so a quarantine on one replica of a fleet hides the revision on all of them at once.

What is cached per process is only what cannot change: a commit's files (a commit's bytes never change),
keyed by (repo, commit, path). Refs, visibility and states are never cached.

Signatures (services/trust.py): a revision with a model-signing signature over exactly its files lists and serves
``model.sig`` as one more regular file; with a trust policy in force, only models it trusts are visible.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import threading
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from registry.catalog import states
from registry.catalog.models import Component, File, Model, Ref, Repo, Revision
from registry.errors import EntryNotFound, RepoNotFound, RevisionNotFound
from registry.hashing import SHA1_RE, git_blob_sha1, lfs_pointer
from registry.paths import check_relative_path, ref_problem
from registry.services.context import Registry
from registry.services.trust import TrustGate, publishable, signature_file
from registry.signing.oms import SIGNATURE_FILE, Statement

DEFAULT_BRANCH = "main"


@dataclass(frozen=True)
class MirrorFile:
    path: str
    size: int
    sha256: str
    git_oid: str   # the Hub's tree oid: git blob sha1, or the LFS pointer's sha1
    lfs: bool

    @property
    def etag(self) -> str:
        """What the Hub sends as ETag / X-Linked-Etag, and the HF cache's blob name."""
        return self.sha256 if self.lfs else self.git_oid

    @property
    def pointer_size(self) -> int:
        return len(lfs_pointer(self.sha256, self.size))


@dataclass(frozen=True)
class MirrorDir:
    path: str
    oid: str  # a deterministic digest of the folder's entries (we keep no git tree objects)


@dataclass(frozen=True)
class RevisionView:
    repo_id: str
    commit: str
    last_modified: dt.datetime
    files: tuple[MirrorFile, ...]


@dataclass(frozen=True)
class RefView:
    name: str
    commit: str


@dataclass(frozen=True)
class FileHit:
    """A file to send: the resolved commit, its metadata and the blob holding its bytes."""

    repo_id: str
    commit: str
    file: MirrorFile
    blob_path: Path


@dataclass(frozen=True)
class _Visible:
    repo_pk: int
    revisions: dict[str, tuple[int, dt.datetime]]  # commit -> (revision pk, newest registration)
    refs: dict[str, str]                           # ref name -> commit, visible targets only


class Mirror:
    """One per server process; thread-safe (each call opens its own read session)."""

    def __init__(self, reg: Registry, *, cache_entries: int = 4096) -> None:
        self.reg = reg
        self._files: OrderedDict[tuple[str, str, str], MirrorFile] = OrderedDict()
        self._max = cache_entries
        self._lock = threading.Lock()
        # With a trust policy only models it trusts are visible (REGISTRY_TRUST / serve --trust).
        self.trust = TrustGate.from_settings(reg.settings)
        self._statements: dict[int, Statement | None] = {}  # signature row id -> its parsed statement

    def served_model_count(self) -> int:
        """How many registered models this mirror serves (what `serve` says at start): with a trust policy, the
        ones it trusts."""
        with self.reg.catalog.reader() as session:
            if self.trust is not None:
                ids = set(session.scalars(select(Model.id).where(Model.state.in_(states.SERVED))))
                return len(self.trust.trusted_model_ids(session, ids))
            return session.scalar(select(func.count()).select_from(Model).where(Model.state.in_(states.SERVED))) or 0

    # ---- visibility -------------------------------------------------------------------------
    def _visible(self, session: Session, repo_id: str) -> _Visible:
        repo_pk = session.scalars(select(Repo.id).where(Repo.repo_id == repo_id)).one_or_none()
        if repo_pk is None:
            raise RepoNotFound(f"repository {repo_id!r} is not on this mirror", details={"repo": repo_id})
        quarantined = select(Model.revision_id).where(Model.state == states.QUARANTINED)
        rows = session.execute(
            select(Revision.id, Revision.commit_sha, Model.updated_at, Model.id)
            .join(Component, Component.revision_id == Revision.id)
            .join(Model, Model.id == Component.model_id)
            .where(Revision.repo_id == repo_pk, Model.state.in_(states.SERVED), Revision.id.not_in(quarantined))
        ).all()
        if self.trust is not None:
            trusted = self.trust.trusted_model_ids(session, {r[3] for r in rows})
            rows = [r for r in rows if r[3] in trusted]
        revisions: dict[str, tuple[int, dt.datetime]] = {}
        for pk, commit, at, _ in rows:
            if commit not in revisions or at > revisions[commit][1]:
                revisions[commit] = (pk, at)
        if not revisions:
            # Verified-only or quarantined repos look exactly like absent ones.
            raise RepoNotFound(f"repository {repo_id!r} is not on this mirror", details={"repo": repo_id})
        by_pk = {pk: commit for commit, (pk, _) in revisions.items()}
        refs = {name: by_pk[rev_pk] for name, rev_pk in
                session.execute(select(Ref.name, Ref.revision_id).where(Ref.repo_id == repo_pk))
                if rev_pk in by_pk and ref_problem(name) is None}  # a bad name (older catalog) is never advertised
        if DEFAULT_BRANCH not in refs:
            # No visible main: the newest registered revision stands in, so plain clients still work.
            refs[DEFAULT_BRANCH] = max(revisions.items(), key=lambda kv: (kv[1][1], kv[1][0]))[0]
        return _Visible(repo_pk, revisions, refs)

    @staticmethod
    def _resolve(vis: _Visible, repo_id: str, revision: str | None) -> str:
        rev = revision or DEFAULT_BRANCH
        why = ref_problem(rev)
        if why is not None:
            raise RevisionNotFound(f"{repo_id} has no revision {rev!r} on this mirror: not a valid ref name ({why})",
                                   details={"repo": repo_id, "revision": rev, "rule": why})
        if SHA1_RE.match(rev) and rev in vis.revisions:
            return rev
        if rev in vis.refs:
            return vis.refs[rev]
        raise RevisionNotFound(f"{repo_id} has no revision {rev!r} on this mirror",
                               details={"repo": repo_id, "revision": rev})

    # ---- queries ----------------------------------------------------------------------------
    def revision(self, repo_id: str, revision: str | None) -> RevisionView:
        with self.reg.catalog.reader() as session:
            vis = self._visible(session, repo_id)
            commit = self._resolve(vis, repo_id, revision)
            pk, at = vis.revisions[commit]
            files = tuple(self._remember(repo_id, commit, f) for f in _files_of(session, pk))
            signature = self._signature(session, pk, repo_id)
        if signature is not None:
            files = tuple(sorted((*files, _signature_entry(signature)), key=lambda f: f.path))
        return RevisionView(repo_id, commit, at, files)

    def _signature(self, session: Session, revision_pk: int, repo_id: str) -> bytes | None:
        """The model.sig served as a file of the revision (never cached: signatures can be added at any time)."""
        if len(self._statements) > self._max:
            self._statements.clear()
        return publishable(session, revision_pk, None, self.trust, repo_id, self._statements)

    def refs(self, repo_id: str) -> tuple[RefView, ...]:
        with self.reg.catalog.reader() as session:
            vis = self._visible(session, repo_id)
        return tuple(RefView(n, c) for n, c in sorted(vis.refs.items()))

    def file(self, repo_id: str, revision: str, path: str) -> FileHit:
        try:
            check_relative_path(path)
        except ValueError as exc:
            raise EntryNotFound(f"{path!r} is not a file path: {exc}", details={"path": path}) from exc
        with self.reg.catalog.reader() as session:
            vis = self._visible(session, repo_id)
            commit = self._resolve(vis, repo_id, revision)
            hit = self._cached(repo_id, commit, path)
            if hit is None:
                row = session.execute(
                    select(File.path, File.size, File.blob_sha256, File.git_oid, File.lfs)
                    .where(File.revision_id == vis.revisions[commit][0], File.path == path)
                ).one_or_none()
                if row is None and path == SIGNATURE_FILE:
                    signature = self._signature(session, vis.revisions[commit][0], repo_id)
                    if signature is not None:
                        return FileHit(repo_id, commit, _signature_entry(signature),
                                       signature_file(self.reg, signature))
                if row is None:
                    raise EntryNotFound(f"{repo_id}@{commit}: no file {path!r}",
                                        details={"repo": repo_id, "commit": commit, "path": path})
                hit = self._remember(repo_id, commit, MirrorFile(*row))
        return FileHit(repo_id, commit, hit, self.reg.store.path_for(hit.sha256))

    def tree(self, repo_id: str, revision: str | None, path: str, *, recursive: bool
             ) -> tuple[str, list[MirrorFile | MirrorDir]]:
        view = self.revision(repo_id, revision)
        entries = tree_entries(view.files, path, recursive=recursive)
        if entries is None:
            raise EntryNotFound(f"{repo_id}@{view.commit}: no folder {path!r}",
                                details={"repo": repo_id, "commit": view.commit, "path": path})
        return view.commit, entries

    def paths_info(self, repo_id: str, revision: str | None, paths: Sequence[str]
                   ) -> tuple[str, list[MirrorFile | MirrorDir]]:
        view = self.revision(repo_id, revision)
        files = {f.path: f for f in view.files}
        dirs = {d.path: d for d in _dirs(view.files)}
        out: list[MirrorFile | MirrorDir] = []
        for p in paths:
            p = p.strip("/")
            if p in files:
                out.append(files[p])
            elif p in dirs:
                out.append(dirs[p])
        return view.commit, out

    # ---- the immutable-per-commit cache -----------------------------------------------------
    def _cached(self, repo_id: str, commit: str, path: str) -> MirrorFile | None:
        with self._lock:
            hit = self._files.get((repo_id, commit, path))
            if hit is not None:
                self._files.move_to_end((repo_id, commit, path))
            return hit

    def _remember(self, repo_id: str, commit: str, f: MirrorFile) -> MirrorFile:
        with self._lock:
            self._files[(repo_id, commit, f.path)] = f
            self._files.move_to_end((repo_id, commit, f.path))
            while len(self._files) > self._max:
                self._files.popitem(last=False)
        return f


def _signature_entry(data: bytes) -> MirrorFile:
    return MirrorFile(SIGNATURE_FILE, len(data), hashlib.sha256(data).hexdigest(), git_blob_sha1(data), False)


def _files_of(session: Session, revision_pk: int) -> list[MirrorFile]:
    rows = session.execute(
        select(File.path, File.size, File.blob_sha256, File.git_oid, File.lfs)
        .where(File.revision_id == revision_pk).order_by(File.path)
    )
    return [MirrorFile(*r) for r in rows]


def _dirs(files: Iterable[MirrorFile]) -> list[MirrorDir]:
    children: dict[str, list[str]] = {}
    for f in files:
        parts = f.path.split("/")
        for i in range(1, len(parts)):
            d = "/".join(parts[:i])
            children.setdefault(d, []).append(f"{f.path}\0{f.git_oid}")
    return [MirrorDir(d, hashlib.sha1("\n".join(sorted(kids)).encode()).hexdigest())
            for d, kids in sorted(children.items())]


def tree_entries(files: Sequence[MirrorFile], path: str, *, recursive: bool) -> list[MirrorFile | MirrorDir] | None:
    """The Hub's tree listing under ``path`` ('' = the root); None when ``path`` is not a folder."""
    prefix = path.strip("/")
    dirs = _dirs(files)
    if prefix and prefix not in {d.path for d in dirs}:
        return None
    base = f"{prefix}/" if prefix else ""
    depth = base.count("/")
    out: list[MirrorFile | MirrorDir] = []
    for d in dirs:
        if d.path.startswith(base) and (recursive or d.path.count("/") == depth):
            out.append(d)
    for f in files:
        if f.path.startswith(base) and (recursive or f.path.count("/") == depth):
            out.append(f)
    return out
