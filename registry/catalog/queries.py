"""Typed lookups used by the services."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session

from registry.catalog.models import Model, Ref, Repo, Revision
from registry.errors import ModelNotFound
from registry.hashing import SHA1_RE


def split_ref(spec: str) -> tuple[str, str | None]:
    """``org/name@rev`` → (``org/name``, ``rev``)."""
    name, _, rev = spec.partition("@")
    return name, (rev or None)


def find_revision(session: Session, repo_id: str, revision: str | None) -> Revision | None:
    """A revision by full commit, unique commit prefix (7+ hex) or ref name; None: the newest recorded."""
    repo = session.scalars(select(Repo).where(Repo.repo_id == repo_id)).one_or_none()
    if repo is None:
        return None
    q = select(Revision).where(Revision.repo_id == repo.id)
    if revision is None:
        ref = session.scalars(select(Ref).where(Ref.repo_id == repo.id, Ref.name == "main")).one_or_none()
        if ref is not None:
            return ref.revision
        return session.scalars(q.order_by(Revision.id.desc())).first()
    if SHA1_RE.match(revision):
        return session.scalars(q.where(Revision.commit_sha == revision)).one_or_none()
    ref = session.scalars(select(Ref).where(Ref.repo_id == repo.id, Ref.name == revision)).one_or_none()
    if ref is not None:
        return ref.revision
    if len(revision) >= 7 and all(c in "0123456789abcdef" for c in revision):
        hits = session.scalars(q.where(Revision.commit_sha.startswith(revision))).all()
        if len(hits) == 1:
            return hits[0]
    return None


def find_model(session: Session, spec: str) -> Model:
    """``NAME`` (its ``main`` ref, else the newest) or ``NAME@REV``."""
    name, rev = split_ref(spec)
    models = session.scalars(select(Model).where(Model.name == name).order_by(Model.id.desc())).all()
    if not models:
        raise ModelNotFound(f"no model named {name!r} in the catalog; see `registry list`, or add/pull it first",
                            details={"name": name})
    revision = find_revision(session, name, rev)
    if revision is not None:
        for m in models:
            if m.revision_id == revision.id:
                return m
    if rev is None:
        return models[0]
    raise ModelNotFound(f"model {name!r} has no revision {rev!r}; see `registry show {name}`",
                        details={"name": name, "revision": rev})


def all_models(session: Session, names: Sequence[str] = ()) -> list[Model]:
    if names:
        return [find_model(session, n) for n in names]
    return list(session.scalars(select(Model).order_by(Model.name, Model.id)))
