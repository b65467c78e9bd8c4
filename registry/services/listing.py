"""``registry list`` and ``registry show``: what the catalog knows, as frozen results."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import joinedload, selectinload

from registry.catalog.models import Component, ComponentFile, File, Lineage, Model, Ref, Repo, Revision
from registry.catalog.queries import find_model
from registry.manifest.resolve import LockedFile, ResolvedManifest
from registry.services.context import Registry


@dataclass(frozen=True)
class ModelSummary:
    name: str
    commit: str
    refs: tuple[str, ...]
    family: str
    state: str
    state_reason: str | None
    inferred: bool
    root_digest: str
    files: int
    bytes: int
    created_at: str
    base_only: bool = False  # its manifest marks it a base: a dependency, not loaded or deployed on its own


@dataclass(frozen=True)
class ComponentDetail:
    role: str
    repo: str
    commit: str
    required: bool
    pinned: bool
    files: tuple[LockedFile, ...]


@dataclass(frozen=True)
class LineageDetail:
    relation: str
    repo: str
    commit: str
    pinned: bool
    model_state: str | None


@dataclass(frozen=True)
class SmokeDetail:
    passed: bool
    device: str
    dtype: str
    wall_ms: float
    fingerprint: str | None
    output_shapes: dict
    error: str | None
    created_at: str


@dataclass(frozen=True)
class ModelDetail:
    summary: ModelSummary
    manifest_source: str | None
    components: tuple[ComponentDetail, ...]
    lineage: tuple[LineageDetail, ...]
    smoke_runs: tuple[SmokeDetail, ...]
    base_of: tuple[str, ...] = ()  # the models recorded with this revision as their base (name@commit)
    family_rule: str = ""  # "family bge-m3: colbert_linear.pt present" (the rule that chose the family)
    disagreements: tuple[str, ...] = ()
    first_use: tuple[str, ...] = ()  # files whose digests were taken on first use, not pinned by a manifest
    first_use_source: str = ""


def _iso(value: dt.datetime | None) -> str:
    return value.isoformat() if value else ""


def summarize(model: Model) -> ModelSummary:
    files = {(c.revision_id, f.path): f.size for c in model.components for f in c.files}
    refs = tuple(sorted(r.name for r in model.revision.repo.refs if r.revision_id == model.revision_id))
    return ModelSummary(
        name=model.name, commit=model.revision.commit_sha, refs=refs, family=model.family, state=model.state,
        state_reason=model.state_reason, inferred=model.inferred, root_digest=model.root_digest, files=len(files),
        bytes=sum(files.values()), created_at=_iso(model.created_at),
        base_only=bool(model.manifest.get("base_only")),
    )


def list_models(reg: Registry) -> tuple[ModelSummary, ...]:
    """Every model, in three queries whatever the catalog's size (not one per model and relation)."""
    with reg.catalog.reader() as session:
        models = session.execute(
            select(Model.id, Model.name, Revision.commit_sha, Model.revision_id, Model.family, Model.state,
                   Model.state_reason, Model.inferred, Model.root_digest, Model.created_at)
            .join(Revision, Revision.id == Model.revision_id)
            .order_by(Model.name, Model.id)).all()
        # a file shared by two components of one model counts once, as in `show`
        distinct_files = (select(Component.model_id, File.id, File.size)
                          .join(ComponentFile, ComponentFile.component_id == Component.id)
                          .join(File, File.id == ComponentFile.file_id).distinct().subquery())
        totals = {mid: (count, total or 0) for mid, count, total in session.execute(
            select(distinct_files.c.model_id, func.count(), func.sum(distinct_files.c.size))
            .group_by(distinct_files.c.model_id))}
        refs: dict[int, list[str]] = {}
        for ref_name, revision_id in session.execute(select(Ref.name, Ref.revision_id)):
            refs.setdefault(revision_id, []).append(ref_name)
        # one key of the manifest, read by the database (the whole JSON of every model is not fetched)
        bases = set(session.scalars(select(Model.id).where(Model.manifest["base_only"].as_boolean().is_(True))))
    return tuple(
        ModelSummary(name=name, commit=commit, refs=tuple(sorted(refs.get(revision_id, ()))), family=family,
                     state=state, state_reason=reason, inferred=inferred, root_digest=root,
                     files=totals.get(mid, (0, 0))[0], bytes=int(totals.get(mid, (0, 0))[1]), created_at=_iso(created),
                     base_only=mid in bases)
        for mid, name, commit, revision_id, family, state, reason, inferred, root, created in models)


def show_model(reg: Registry, spec: str) -> ModelDetail:
    from registry.services.load import base_users

    with reg.catalog.reader() as session:
        found = find_model(session, spec)
        # everything `show` prints, in a few batched queries rather than one per file, blob and run
        model = session.scalars(select(Model).where(Model.id == found.id).options(
            joinedload(Model.revision).joinedload(Revision.repo).selectinload(Repo.refs),
            selectinload(Model.components).joinedload(Component.revision).joinedload(Revision.repo),
            selectinload(Model.components).selectinload(Component.files).joinedload(File.blob),
            selectinload(Model.lineage).joinedload(Lineage.parent_revision).joinedload(Revision.repo),
            selectinload(Model.lineage).joinedload(Lineage.parent_model),
            selectinload(Model.smoke_runs),
        ).execution_options(populate_existing=True)).one()
        base_of = tuple(base_users(reg, model.name, model.revision.commit_sha))
        resolved = ResolvedManifest.from_dict(model.manifest)
        return ModelDetail(
            summary=summarize(model),
            manifest_source=model.manifest.get("source"),
            family_rule=resolved.family_rule,
            disagreements=tuple((resolved.inference or {}).get("disagreements", ())),
            first_use=resolved.first_use, first_use_source=resolved.first_use_source,
            components=tuple(
                ComponentDetail(
                    role=c.role, repo=c.revision.repo.repo_id, commit=c.revision.commit_sha, required=c.required,
                    pinned=c.pinned,
                    files=tuple(LockedFile(f.path, f.size, f.blob_sha256, f.blob.blake3, f.git_oid, f.lfs) for f in c.files),
                )
                for c in model.components
            ),
            lineage=tuple(
                LineageDetail(
                    relation=l.relation, repo=l.parent_revision.repo.repo_id, commit=l.parent_revision.commit_sha,
                    pinned=l.pinned, model_state=l.parent_model.state if l.parent_model else None,
                )
                for l in model.lineage
            ),
            smoke_runs=tuple(
                SmokeDetail(s.passed, s.device, s.dtype, s.wall_ms, s.fingerprint, dict(s.output_shapes), s.error,
                            _iso(s.created_at))
                for s in model.smoke_runs
            ),
            base_of=base_of,
        )
