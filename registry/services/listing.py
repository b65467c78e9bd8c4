"""``registry list`` and ``registry show``: what the catalog knows, as frozen results."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from registry.catalog.models import Model
from registry.catalog.queries import all_models, find_model
from registry.manifest.resolve import LockedFile
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
    with reg.catalog.reader() as session:
        return tuple(summarize(m) for m in all_models(session))


def show_model(reg: Registry, spec: str) -> ModelDetail:
    from registry.services.load import base_users

    with reg.catalog.reader() as session:
        model = find_model(session, spec)
        base_of = tuple(base_users(reg, model.name, model.revision.commit_sha))
        return ModelDetail(
            summary=summarize(model),
            manifest_source=model.manifest.get("source"),
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
