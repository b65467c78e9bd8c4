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

from registry.catalog.queries import find_model
from registry.errors import ConflictError, IncompleteModel, IntegrityError, ManifestError, RegistryError, SmokeFailed
from registry.formats import check_files
from registry.loaders import REQUIRED_FILES, REQUIRED_ROLES
from registry.loaders.materialize import materialize
from registry.manifest.resolve import ResolvedManifest
from registry.manifest.schema import curated_manifest_path, load_manifest_file
from registry.services.context import Registry
from registry.store import ExpectedBlob, check_blobs

LOADABLE_STATES = ("verified", "registered")


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


def _curated_roles(reg: Registry, name: str) -> list[str]:
    path = curated_manifest_path(reg.settings.manifests_dir, name)
    if path is None:
        return []
    try:
        curated = load_manifest_file(path)
    except ManifestError:
        return []
    return [c.role for c in curated.components if c.required]


def missing_parts(resolved: ResolvedManifest, curated_roles: Sequence[str] = ()) -> list[str]:
    """``role: file`` for everything the manifest, the family or the curated manifest needs and lacks."""
    roles = {c.role for c in resolved.components}
    missing: list[str] = []
    for role in dict.fromkeys([*REQUIRED_ROLES.get(resolved.family, ()), *curated_roles]):
        if role not in roles:
            missing.append(f"{role}: (no {role} component; the {resolved.family} family or the curated manifest "
                           "requires one)")
    for role, filename in REQUIRED_FILES.get(resolved.family, ()):
        if not any(c.role == role and PurePosixPath(f.path).name == filename
                   for c in resolved.components for f in c.files):
            missing.append(f"{role}: {filename}")
    for comp in resolved.components:
        if comp.required and not comp.files:
            missing.append(f"{comp.role}: {comp.repo} (no files recorded)")
    return missing


def gate(reg: Registry, spec: str) -> Gated:
    with reg.catalog.reader() as session:
        model = find_model(session, spec)
        name, commit, state, reason, model_id = (model.name, model.revision.commit_sha, model.state,
                                                 model.state_reason, model.id)
        resolved = ResolvedManifest.from_dict(model.manifest)
    label = f"{name}@{commit[:12]}"
    if state == "quarantined":
        raise ConflictError(f"{label} is quarantined ({reason}); quarantined models are never loaded. Fix the cause, "
                            "then add or pull it again and run `registry register`",
                            details={"name": name, "state": state, "reason": reason})
    if state not in LOADABLE_STATES:
        raise ConflictError(f"{label} is {state}, not verified: finish `registry pull {name}` first",
                            details={"name": name, "state": state})
    missing = missing_parts(resolved, _curated_roles(reg, name))
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
    return Gated(name, commit, model_id, state, resolved, folders, len(uses), sum(c.hashed for c in checks))


def checkpoint_dtype(gated: Gated) -> str | None:
    """The dtype the checkpoint declares in its config (``dtype`` or ``torch_dtype``), if any."""
    import json

    for comp in gated.resolved.components:
        if comp.role in ("weights", "base", "config") and any(f.path == "config.json" for f in comp.files):
            try:
                config = json.loads((gated.folders[comp.repo] / "config.json").read_text())
            except (OSError, ValueError):
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


def library_failure(gated: Gated, step: str, exc: BaseException) -> SmokeFailed:
    first = (str(exc).strip().splitlines() or [""])[0][:500]
    return SmokeFailed(f"{gated.label}: {step} with the {gated.resolved.family} family's library failed: "
                       f"{type(exc).__name__}: {first}", details={"check": step, "exception": type(exc).__name__})


def load_model(reg: Registry, spec: str, *, device: str = "auto", dtype: str = "auto") -> LoadedModel:
    gated = gate(reg, spec)
    result = instantiate(gated, device, dtype)
    reg.log_now("load", gated.name, commit=gated.commit, device=result.summary.device, dtype=result.summary.dtype)
    return result
