"""``registry merge NAME --name NEW``: merge a LoRA adapter into the base its manifest pins
(``merge_and_unload``), save the WHOLE model as safetensors with the processor/tokenizer files (saving
the PEFT model would write the adapter alone), add it as a new model whose lineage is ``merged_from``
the adapter's and the base's revisions, prove that its smoke output equals adapter+base within
tolerance, and register it. A merged model that fails the proof is quarantined."""

from __future__ import annotations

import json
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from sqlalchemy import select

from registry.catalog import states
from registry.catalog.models import Lineage, Model
from registry.catalog.queries import find_model, find_revision
from registry.errors import ConflictError, SmokeFailed, UsageError
from registry.manifest.schema import REPO_ID_RE
from registry.services.add import add_folder
from registry.services.context import Registry
from registry.services.load import Gated, gate, instantiate
from registry.services.register import RegisterResult, register_model

ADAPTER_FAMILIES = {"peft": "transformers", "colqwen2": "colqwen2", "colpali": "colpali"}


@dataclass(frozen=True)
class MergeResult:
    name: str
    commit: str
    adapter: str
    base: str
    dtype: str
    files: int
    bytes: int
    max_difference: float
    tolerance: float
    state: str
    register: RegisterResult


def _toml_str(value: str) -> str:
    return json.dumps(value)  # a JSON string is a valid TOML basic string


def _manifest_text(name: str, family: str, gated: Gated, weight_files: list[str], side_files: list[str]) -> str:
    smoke = gated.resolved.smoke
    lines = [f"name = {_toml_str(name)}", f"family = {_toml_str(family)}",
             f"description = {_toml_str('merged from ' + gated.label + ' over ' + _base(gated))}",
             f"expected_missing_keys = {json.dumps(list(gated.resolved.expected_missing_keys))}", ""]
    groups = [("config", ["config.json"] + (["generation_config.json"] if "generation_config.json" in side_files else [])),
              ("weights", weight_files),
              ("tokenizer", [f for f in side_files if f not in ("config.json", "generation_config.json")
                             and "preprocessor" not in f and "processor" not in f and "chat_template" not in f]),
              ("processor", [f for f in side_files if "preprocessor" in f or "processor" in f or "chat_template" in f])]
    for role, files in groups:
        if files:
            lines += ["[[component]]", f"role = {_toml_str(role)}", f"files = {json.dumps(sorted(set(files)))}", ""]
    lines += ["[smoke]", f"texts = {json.dumps(list(smoke.get('texts') or ['What is the capital of France?']))}"]
    if smoke.get("image"):
        img = smoke["image"]
        lines.append(f"image = {{ width = {int(img['width'])}, height = {int(img['height'])}, seed = {int(img['seed'])} }}")
    return "\n".join(lines) + "\n"


def _base(gated: Gated) -> str:
    return next(f"{c.repo}@{c.commit}" for c in gated.resolved.components if c.role == "base")


def _save_dtype(gated: Gated) -> str:
    from registry.services.load import checkpoint_dtype

    declared = checkpoint_dtype(gated)
    return declared if declared in ("bfloat16", "float16") else "float32"


def merge_model(reg: Registry, spec: str, new_name: str, *, device: str = "auto") -> MergeResult:
    if not REPO_ID_RE.match(new_name or ""):
        raise UsageError(f"--name {new_name!r} is not a repo id like 'org/name'")
    with reg.catalog.reader() as session:
        existing = session.scalars(select(Model).where(Model.name == new_name)).all()
        # a merge whose proof failed may be run again (that is its quarantine's lift); any other name is taken
        if any(m.state != states.QUARANTINED or states.cause_of(m.state_reason) is not states.Cause.MERGE
               for m in existing):
            raise ConflictError(f"a model named {new_name!r} already exists; choose another --name",
                                details={"name": new_name})
    gated = gate(reg, spec)
    family = gated.resolved.family
    if family not in ADAPTER_FAMILIES or not any(c.role == "adapter" for c in gated.resolved.components):
        raise UsageError(f"{gated.label} is not a LoRA adapter model (family {family}); merge takes an adapter whose "
                         "manifest pins its base")
    from registry.loaders import family as family_module
    from registry.loaders.fingerprint import max_difference, tolerance
    from registry.loaders.runtime import import_torch
    from registry.loaders.smoke import SmokeInputs

    loaded = instantiate(gated, device, "float32")
    fam = family_module(family)
    inputs = SmokeInputs.from_manifest(gated.resolved.smoke)
    reference = fam.smoke(loaded.loaded, inputs.texts, inputs.picture())
    save_dtype = _save_dtype(gated)
    merged = loaded.model.merge_and_unload()
    merged.to(dtype=getattr(import_torch(), save_dtype))
    work = reg.settings.home / "tmp"
    work.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=work, prefix="merge-") as tmp:
        out = Path(tmp) / "model"
        merged.save_pretrained(out, safe_serialization=True)
        weight_files = sorted(p.name for p in out.iterdir() if p.name.startswith("model") and "safetensors" in p.name)
        side: list[str] = [p.name for p in out.iterdir() if p.name in ("config.json", "generation_config.json")]
        for comp in gated.resolved.components:
            if comp.role in ("tokenizer", "processor"):
                for f in comp.files:
                    target = out / PurePosixPath(f.path).name
                    if not target.exists():
                        shutil.copyfile(gated.folders[comp.repo] / f.path, target)  # small files; follows the link
                        side.append(target.name)
        manifest = Path(tmp) / "manifest.toml"
        manifest.write_text(_manifest_text(new_name, ADAPTER_FAMILIES[family], gated, weight_files, side))
        added = add_folder(reg, out, new_name, manifest_file=manifest, register=False)  # registered below
    _record_lineage(reg, gated, new_name, added.commit)

    spec_new = f"{new_name}@{added.commit}"
    try:  # the same bytes merged again keep their merge-proof quarantine until this proof passes
        merged_loaded = instantiate(gate(reg, spec_new, allow_quarantined=True), device, "float32")
        merged_out = fam.smoke(merged_loaded.loaded, inputs.texts, inputs.picture())
    except SmokeFailed as exc:
        _quarantine(reg, spec_new, f"the merged model does not load: {exc.message}")
        raise
    diff = max_difference(reference, merged_out)
    tol = 10 * tolerance(merged_loaded.summary.device, save_dtype)[1]
    if set(reference) != set(merged_out) or diff > tol:
        reason = (f"merged output differs from adapter+base by {diff:.3g} (tolerance {tol:g}) "
                  f"on {merged_loaded.summary.device}")
        _quarantine(reg, spec_new, reason)
        raise SmokeFailed(f"{new_name}@{added.commit[:12]} quarantined by the merge proof: {reason}",
                          details={"check": "merge", "difference": diff, "tolerance": tol})
    _lift(reg, spec_new)
    registered = register_model(reg, spec_new, device=device)
    return MergeResult(new_name, added.commit, gated.label, _base(gated), save_dtype, added.files, added.bytes, diff, tol,
                       registered.state, registered)


def _quarantine(reg: Registry, spec: str, detail: str) -> None:
    with reg.catalog.session() as session:
        model = find_model(session, spec)
        states.quarantine(model, states.Cause.MERGE, detail)
        reg.log(session, "quarantine", model.name, commit=model.revision.commit_sha, reason=model.state_reason)


def _lift(reg: Registry, spec: str) -> None:
    """The proof passed: a merge-proof quarantine of these bytes (an earlier merge's) ends."""
    with reg.catalog.session() as session:
        model = find_model(session, spec)
        reason = model.state_reason
        if states.lift(model, states.Cause.MERGE):
            reg.log(session, "release", model.name, commit=model.revision.commit_sha, lifted=reason)


def _record_lineage(reg: Registry, gated: Gated, name: str, commit: str) -> None:
    """``merged_from`` the adapter's revision and the base's, in one transaction."""
    parents = [(c.repo, c.commit) for c in gated.resolved.components if c.role == "base"]
    parents.insert(0, (gated.name, gated.commit))
    with reg.catalog.session() as session:
        model = find_model(session, f"{name}@{commit}")
        model.lineage[:] = [l for l in model.lineage if l.relation != "merged_from"]
        for repo, rev_sha in parents:
            rev = find_revision(session, repo, rev_sha)
            if rev is None:
                raise ConflictError(f"{repo}@{rev_sha} vanished from the catalog during the merge")
            parent = session.scalars(select(Model).where(Model.name == repo, Model.revision_id == rev.id)).first()
            model.lineage.append(Lineage(relation="merged_from", parent_revision=rev, parent_model=parent, pinned=True))
        reg.log(session, "merge", name, commit=commit, adapter=gated.label, base=_base(gated))
