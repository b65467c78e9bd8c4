"""``registry load``: the gate, then the family's loader.

The gate runs before torch is imported: the model must not be quarantined, its manifest must be fully
satisfied (every required role and file, the files its family cannot do without, every role a curated
manifest for that name requires), and every file's blob must pass a fast verify. Otherwise it raises
IncompleteModel naming each ``role: file``. Only then are the files materialised (links into the
store) and handed to the family's library.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from sqlalchemy import select

from registry.catalog import states
from registry.catalog.models import Lineage, Model, Repo, Revision
from registry.catalog.queries import find_model
from registry.errors import (
    ConflictError, IncompleteModel, IntegrityError, ManifestError, MissingExtra, RegistryError, SmokeFailed,
)
from registry.formats import check_files
from registry.loaders import REQUIRED_FILES, REQUIRED_ROLES
from registry.loaders.materialize import materialize
from registry.manifest.jsonread import parse_json
from registry.manifest.resolve import ResolvedManifest
from registry.manifest.schema import curated_manifest_path, load_manifest_file
from registry.services.context import Registry
from registry.store import ExpectedBlob, check_blobs


@dataclass(frozen=True)
class Gated:
    """A model that passed the gate: its resolved manifest and its files as folders of links."""

    name: str
    commit: str
    model_id: int
    state: str
    resolved: ResolvedManifest
    folders: dict[str, Path]
    files_checked: int
    blobs_hashed: int
    reason: str | None = None  # why it is quarantined, when it is

    @property
    def label(self) -> str:
        return f"{self.name}@{self.commit[:12]}"


@dataclass(frozen=True)
class LoadSummary:
    name: str
    commit: str
    state: str
    family: str
    device: str
    dtype: str
    load_ms: float
    parameters: int
    checks: tuple[str, ...]
    notes: tuple[str, ...]


@dataclass(frozen=True)
class LoadedModel:
    summary: LoadSummary
    model: Any
    processor: Any
    loaded: Any  # registry.loaders.base.Loaded: what the smoke needs


def curated_roles(reg: Registry, name: str) -> list[str]:
    """The roles the curated manifest for ``name`` requires, whatever manifest a model was recorded with."""
    path = curated_manifest_path(reg.settings.manifests_dir, name)
    if path is None:
        return []
    try:
        curated = load_manifest_file(path)
    except ManifestError:
        return []
    return [c.role for c in curated.components if c.required]


Part = tuple[str, str, bool, Sequence[str]]  # (role, repo, required, paths)


def missing_for(family: str, parts: Sequence[Part], curated: Sequence[str] = ()) -> list[str]:
    """``role: file`` for everything the family or the curated manifest needs and ``parts`` lack."""
    roles = {role for role, _repo, _req, _paths in parts}
    missing: list[str] = []
    for role in dict.fromkeys([*REQUIRED_ROLES.get(family, ()), *curated]):
        if role not in roles:
            missing.append(f"{role}: (no {role} component; the {family} family or the curated manifest "
                           "requires one)")
    for role, filename in REQUIRED_FILES.get(family, ()):
        if not any(r == role and PurePosixPath(p).name == filename for r, _repo, _req, paths in parts for p in paths):
            missing.append(f"{role}: {filename}")
    for role, repo, required, paths in parts:
        if required and not paths:
            missing.append(f"{role}: {repo} (no files recorded)")
    return missing


def missing_parts(resolved: ResolvedManifest, curated: Sequence[str] = ()) -> list[str]:
    """``role: file`` for everything the manifest, the family or the curated manifest needs and lacks."""
    return missing_for(resolved.family, [(c.role, c.repo, c.required, [f.path for f in c.files])
                                         for c in resolved.components], curated)


def base_users(reg: Registry, name: str, commit: str) -> list[str]:
    """The models in the catalog recorded with this revision as their base."""
    with reg.catalog.reader() as session:
        rows = session.execute(
            select(Model.name, Revision.commit_sha).join(Lineage, Lineage.model_id == Model.id)
            .join(Revision, Revision.id == Model.revision_id)
            .where(Lineage.relation == "base", Lineage.parent_revision_id.in_(
                select(Revision.id).join(Repo, Repo.id == Revision.repo_id)
                .where(Repo.repo_id == name, Revision.commit_sha == commit)))
            .order_by(Model.name)
        ).all()
    return list(dict.fromkeys(f"{n}@{c[:12]}" for n, c in rows))


def refuse_base(reg: Registry, name: str, commit: str, action: str) -> ConflictError:
    users = base_users(reg, name, commit)
    used = (f"it is the base of {', '.join(users)}; {action} one of those instead" if users
            else "no model in the catalog uses it as its base yet")
    return ConflictError(
        f"{name}@{commit[:12]} is a base (its manifest says base_only): it is stored, verified and served as a "
        f"dependency, not used as a model of its own, since it is untrained for the task on its own; {used}, "
        f"or pass --as-base to {action} the base itself",
        details={"name": name, "base_only": True, "used_by": users},
    )


def gate(reg: Registry, spec: str, *, as_base: bool = False, allow_quarantined: bool = False,
         action: str = "load") -> Gated:
    """``allow_quarantined``: registration re-runs through here (its pass lifts the quarantine)."""
    with reg.catalog.reader() as session:
        model = find_model(session, spec)
        name, commit, state, reason, model_id = (model.name, model.revision.commit_sha, model.state,
                                                 model.state_reason, model.id)
        resolved = ResolvedManifest.from_dict(model.manifest)
    label = f"{name}@{commit[:12]}"
    if state == states.QUARANTINED and not allow_quarantined:
        raise ConflictError(f"{label} is quarantined ({reason}); quarantined models are never loaded. To lift it: "
                            + states.lifted_by(reason, name),
                            details={"name": name, "state": state, "reason": reason})
    if resolved.base_only and not as_base:
        raise refuse_base(reg, name, commit, action)
    missing = missing_parts(resolved, curated_roles(reg, name))
    uses: dict[str, list[str]] = {}
    expected: dict[str, ExpectedBlob] = {}
    for comp in resolved.components:
        for f in comp.files:
            uses.setdefault(f.sha256, []).append(f"{comp.role}: {f.path}")
            expected[f.sha256] = ExpectedBlob(f.sha256, f.size, f.blake3)
    checks = check_blobs(reg.store, reg.stat_cache, list(expected.values()), deep=False)
    changed: list[str] = []
    for check in checks:
        if check.status == "missing":
            missing.extend(f"{u} (not in the store)" for u in uses[check.sha256])
        elif check.status == "changed":
            changed.extend(f"{u}: {check.reason}" for u in uses[check.sha256])
    if missing:
        reg.log_now("load.refused", name, commit=commit, missing=missing)
        raise IncompleteModel(f"{label} cannot be loaded; missing:\n  " + "\n  ".join(missing),
                              missing=missing, details={"name": name, "commit": commit})
    if changed:
        reg.log_now("load.refused", name, commit=commit, changed=changed)
        raise IntegrityError(f"{label} cannot be loaded; files changed in the store:\n  " + "\n  ".join(changed)
                             + "\nrun `registry verify` (it quarantines the model) and pull or add it again",
                             details={"name": name, "changed": changed})
    for comp_repo in dict.fromkeys(c.repo for c in resolved.components):
        files = {f.path: reg.store.path_for(f.sha256) for c in resolved.components if c.repo == comp_repo
                 for f in c.files}
        check_files(files, label=comp_repo)
    folders = materialize(resolved, reg.store.path_for, reg.settings.home / "materialized")
    return Gated(name, commit, model_id, state, resolved, folders, len(uses), sum(c.hashed for c in checks), reason)


def checkpoint_dtype(gated: Gated) -> str | None:
    """The dtype the checkpoint declares in its config (``dtype`` or ``torch_dtype``), if any."""
    for comp in gated.resolved.components:
        if comp.role in ("weights", "base", "config") and any(f.path == "config.json" for f in comp.files):
            try:
                config = parse_json((gated.folders[comp.repo] / "config.json").read_bytes(), "config.json")
            except (OSError, RegistryError):
                return None
            value = config.get("dtype") or config.get("torch_dtype")
            return value if isinstance(value, str) else None
    return None


def instantiate(gated: Gated, device: str = "auto", dtype: str = "auto") -> LoadedModel:
    """The family's loader over the gated files (imports torch and the family's library)."""
    from registry.loaders import family
    from registry.loaders.base import LoadRequest
    from registry.loaders.runtime import place

    placement = place(device, dtype, checkpoint_dtype=checkpoint_dtype(gated))
    start = time.perf_counter()
    try:
        loaded = family(gated.resolved.family).load(LoadRequest(gated.resolved, gated.folders, placement))
    except RegistryError:
        raise
    except Exception as exc:  # noqa: BLE001 - a library's own failure becomes a clear refusal
        raise library_failure(gated, "loading", exc) from exc
    load_ms = (time.perf_counter() - start) * 1000
    params = sum(p.numel() for p in loaded.model.parameters()) if hasattr(loaded.model, "parameters") else 0
    if not params and hasattr(loaded.model, "model"):
        params = sum(p.numel() for p in loaded.model.model.parameters())
    summary = LoadSummary(gated.name, gated.commit, gated.state, gated.resolved.family, placement.label,
                          placement.dtype, round(load_ms, 1), int(params), tuple(loaded.checks), tuple(loaded.notes))
    return LoadedModel(summary, loaded.model, loaded.processor, loaded)


def library_failure(gated: Gated, step: str, exc: BaseException) -> SmokeFailed | MissingExtra:
    """What a family library's exception means: an import that fails (a module missing, or of a version the
    library does not work with) is the environment's fault (exit 12, nothing quarantined); anything else
    is the model's (SmokeFailed, which quarantines it)."""
    if isinstance(exc, ImportError):
        from registry.loaders.runtime import FAMILY_LIBRARIES, environment_fault

        library, extra = FAMILY_LIBRARIES.get(gated.resolved.family, ("transformers", "ml"))
        return environment_fault(library, exc, extra)
    first = (str(exc).strip().splitlines() or [""])[0][:500]
    return SmokeFailed(f"{gated.label}: {step} with the {gated.resolved.family} family's library failed: "
                       f"{type(exc).__name__}: {first}", details={"check": step, "exception": type(exc).__name__})


def load_model(reg: Registry, spec: str, *, device: str = "auto", dtype: str = "auto",
               as_base: bool = False) -> LoadedModel:
    gated = gate(reg, spec, as_base=as_base)
    result = instantiate(gated, device, dtype)
    reg.log_now("load", gated.name, commit=gated.commit, device=result.summary.device, dtype=result.summary.dtype)
    return result
