"""Write a resolved model into the catalog: repos, revisions, refs, blobs, files, model, components,
lineage. Shared by add, pull, import and merge. Runs inside the caller's transaction, and is
idempotent: recording the same thing twice (or from two processes at once) converges on one row each.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from registry.catalog import states
from registry.catalog.base import utcnow
from registry.catalog.models import Blob, Component, File, Lineage, Model, Ref, Repo, Revision
from registry.catalog.states import VERIFIED
from registry.errors import ConflictError
from registry.manifest.resolve import LockedFile, ResolvedManifest
from registry.paths import require_ref


@dataclass(frozen=True)
class RepoSource:
    """Where one repo's revision came from, and which ref names point at it."""

    repo_id: str
    commit: str
    source: str
    refs: tuple[str, ...] = ()


def _insert_ignore(session: Session, model: type, values: list[dict], keys: list[str]) -> None:
    if not values:
        return
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    session.execute(insert(model).values(values).on_conflict_do_nothing(index_elements=keys))


def ensure_revision(session: Session, src: RepoSource) -> Revision:
    _insert_ignore(session, Repo, [{"repo_id": src.repo_id, "repo_type": "model"}], ["repo_id"])
    repo = session.scalars(select(Repo).where(Repo.repo_id == src.repo_id)).one()
    _insert_ignore(session, Revision, [{"repo_id": repo.id, "commit_sha": src.commit, "source": src.source}],
                   ["repo_id", "commit_sha"])
    rev = session.scalars(select(Revision).where(Revision.repo_id == repo.id, Revision.commit_sha == src.commit)).one()
    for name in src.refs:
        require_ref(name, f"{src.repo_id}: ref")  # callers check first; this is the last line (nothing commits)
        ref = session.scalars(select(Ref).where(Ref.repo_id == repo.id, Ref.name == name)).one_or_none()
        if ref is None:
            _insert_ignore(session, Ref, [{"repo_id": repo.id, "name": name, "revision_id": rev.id}], ["repo_id", "name"])
        elif ref.revision_id != rev.id:
            ref.revision_id = rev.id
    return rev


def ensure_blobs(session: Session, files: Iterable[LockedFile]) -> None:
    by_sha = {f.sha256: f for f in files}
    _insert_ignore(
        session, Blob,
        [{"sha256": f.sha256, "size": f.size, "blake3": f.blake3, "git_sha1": None if f.lfs else f.git_oid}
         for f in by_sha.values()],
        ["sha256"],
    )


def ensure_files(session: Session, rev: Revision, files: Iterable[LockedFile]) -> dict[str, File]:
    wanted = {f.path: f for f in files}
    _insert_ignore(
        session, File,
        [{"revision_id": rev.id, "path": f.path, "size": f.size, "blob_sha256": f.sha256, "git_oid": f.git_oid,
          "lfs": f.lfs} for f in wanted.values()],
        ["revision_id", "path"],
    )
    rows = {r.path: r for r in session.scalars(select(File).where(File.revision_id == rev.id, File.path.in_(wanted)))}
    for path, f in wanted.items():
        if rows[path].blob_sha256 != f.sha256:
            raise ConflictError(
                f"{rev.repo.repo_id}@{rev.commit_sha}: {path} is already recorded with sha256 {rows[path].blob_sha256}, "
                f"now seen as {f.sha256}; a commit's bytes cannot change",
                details={"path": path, "recorded": rows[path].blob_sha256, "seen": f.sha256},
            )
    return rows


def record_model(
    session: Session,
    resolved: ResolvedManifest,
    sources: Mapping[str, RepoSource],
    *,
    state: str = VERIFIED,
    reason: str | None = None,
    derived_from: Iterable[tuple[str, Revision | RepoSource]] = (),
) -> Model:
    """Record (or re-record) ``resolved`` as a model at its own repo's revision, claiming ``state`` (verified
    for an ingest, the bundle's state for an import); ``states.on_record`` decides what a re-recorded row keeps."""
    revisions = {repo: ensure_revision(session, src) for repo, src in sources.items()}
    ensure_blobs(session, (f for c in resolved.components for f in c.files))
    file_rows: dict[str, dict[str, File]] = {}
    for comp in resolved.components:
        rows = ensure_files(session, revisions[comp.repo], comp.files)
        file_rows.setdefault(comp.repo, {}).update(rows)

    own = revisions[resolved.name]
    manifest = resolved.to_dict()
    # Insert-if-absent, then lock the row: two processes recording the same model (Postgres runs them
    # truly in parallel) take turns instead of both rewriting its components.
    _insert_ignore(session, Model, [{
        "name": resolved.name, "revision_id": own.id, "family": resolved.family, "state": state,
        "state_reason": reason, "inferred": resolved.inferred, "manifest": manifest,
        "root_digest": resolved.root_digest, "updated_at": utcnow(),
    }], ["name", "revision_id"])
    model = session.scalars(
        select(Model).where(Model.name == resolved.name, Model.revision_id == own.id)
        .with_for_update().execution_options(populate_existing=True)
    ).one()
    # (a row this call has just inserted holds the claimed state already, and keeps it)
    same = model.root_digest == resolved.root_digest and model.manifest == manifest
    model.state, model.state_reason = states.on_record(model, same=same, state=state, reason=reason)
    model.family, model.inferred, model.manifest, model.root_digest = (
        resolved.family, resolved.inferred, manifest, resolved.root_digest)
    model.components.clear()
    model.lineage.clear()
    session.flush()

    for position, comp in enumerate(resolved.components):
        model.components.append(Component(
            position=position, role=comp.role, revision=revisions[comp.repo], required=comp.required,
            pinned=comp.pinned, files=[file_rows[comp.repo][f.path] for f in comp.files],
        ))
        if comp.role == "base" and comp.repo != resolved.name:
            parent = session.scalars(
                select(Model).where(Model.name == comp.repo, Model.revision_id == revisions[comp.repo].id)
            ).one_or_none()
            model.lineage.append(Lineage(relation="base", parent_revision=revisions[comp.repo], parent_model=parent,
                                         pinned=comp.pinned))
    for relation, parent_rev in derived_from:
        rev = parent_rev if isinstance(parent_rev, Revision) else ensure_revision(session, parent_rev)
        parent = session.scalars(select(Model).where(Model.revision_id == rev.id)).first()
        model.lineage.append(Lineage(relation=relation, parent_revision=rev, parent_model=parent, pinned=True))
    session.flush()
    return model
