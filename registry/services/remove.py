"""``registry rm NAME[@REVISION]``: take a model out of the catalog.

``NAME`` removes every revision of the model, ``NAME@REV`` one. Refused while a revision is deployed
(a live deployment without its catalog record could no longer be audited) or is the base of another
model (which would lose its lineage), unless ``force``. The blobs stay in the store until the next
``registry gc`` (which removes those no remaining file references), so an ``rm`` is undone by adding or
pulling the model again without downloading a byte. Recorded in the event log.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import delete, exists, select
from sqlalchemy.orm import Session

from registry.catalog.models import Component, ComponentFile, Deployment, File, Lineage, Model, Ref, Revision
from registry.catalog.queries import find_model, split_ref
from registry.errors import ConflictError, ModelNotFound
from registry.services.context import Registry


@dataclass(frozen=True)
class RemovedRevision:
    name: str
    commit: str
    state: str
    deployments: tuple[str, ...]  # "node:path" of the live deployments it had (only with force)
    dependents: tuple[str, ...]   # "name@commit12" of the models built on it (only with force)


@dataclass(frozen=True)
class RemoveResult:
    removed: tuple[RemovedRevision, ...]
    forced: bool
    files_released: int  # catalog file rows no model uses any more: their blobs go at the next gc


def _targets(session: Session, spec: str) -> list[Model]:
    name, rev = split_ref(spec)
    if rev is not None:
        return [find_model(session, spec)]
    models = list(session.scalars(select(Model).where(Model.name == name).order_by(Model.id)))
    if not models:
        raise ModelNotFound(f"no model named {name!r} in the catalog; see `registry list`", details={"name": name})
    return models


def _live_deployments(session: Session, model: Model) -> tuple[str, ...]:
    rows = session.execute(select(Deployment.node, Deployment.path)
                           .where(Deployment.model_id == model.id, Deployment.removed_at.is_(None)))
    return tuple(f"{node}:{path}" for node, path in rows)


def _dependents(session: Session, model: Model, leaving: set[int]) -> tuple[str, ...]:
    """Models (other than those being removed) whose lineage or components name this model's revision as base."""
    rows = session.execute(
        select(Model.name, Revision.commit_sha).join(Revision, Revision.id == Model.revision_id)
        .where(Model.id.not_in(leaving), (
            exists().where(Lineage.model_id == Model.id, Lineage.parent_revision_id == model.revision_id))
            | exists().where(Component.model_id == Model.id, Component.role == "base",
                             Component.revision_id == model.revision_id))
        .order_by(Model.name))
    return tuple(f"{name}@{commit[:12]}" for name, commit in rows)


def remove_model(reg: Registry, spec: str, *, force: bool = False) -> RemoveResult:
    with reg.catalog.session() as session:
        models = _targets(session, spec)
        leaving = {m.id for m in models}
        removed: list[RemovedRevision] = []
        blocked: list[str] = []
        for model in models:
            deployed, dependents = _live_deployments(session, model), _dependents(session, model, leaving)
            label = f"{model.name}@{model.revision.commit_sha[:12]}"
            if deployed:
                blocked.append(f"{label} is deployed at {', '.join(deployed)} (run `registry undeploy` first)")
            if dependents:
                blocked.append(f"{label} is the base of {', '.join(dependents)}")
            removed.append(RemovedRevision(model.name, model.revision.commit_sha, model.state, deployed, dependents))
        if blocked and not force:
            raise ConflictError("refused: " + "; ".join(blocked) + "; pass --force to remove it anyway "
                                "(deployment records go with it, dependents keep their own components)",
                                details={"blocked": blocked})
        revisions = {m.revision_id for m in models}
        for model in models:
            session.delete(model)  # components, their file links, smoke runs, lineage and deployments cascade
        session.flush()
        files_released = _release_files(session, revisions)
        for r in removed:
            reg.log(session, "rm", r.name, commit=r.commit, state=r.state, forced=force and bool(blocked),
                    deployments=list(r.deployments), dependents=list(r.dependents))
    return RemoveResult(tuple(removed), force and bool(blocked), files_released)


def _release_files(session: Session, revisions: set[int]) -> int:
    """Drop the file rows (and refs) of these revisions that no remaining model uses, so gc can free the blobs."""
    unused = (select(File.id).where(File.revision_id.in_(revisions))
              .where(~exists().where(ComponentFile.file_id == File.id)))
    ids = list(session.scalars(unused))
    if ids:
        session.execute(delete(File).where(File.id.in_(ids)))
    still_used = set(session.scalars(select(Component.revision_id).where(Component.revision_id.in_(revisions))))
    still_used |= set(session.scalars(select(Model.revision_id).where(Model.revision_id.in_(revisions))))
    gone = revisions - still_used
    if gone:
        session.execute(delete(Ref).where(Ref.revision_id.in_(gone)))
    return len(ids)
