"""Infer a manifest for a repo with no curated one, from its file list and its small JSON files.

Two steps, each in its own module: ``rules.decide`` picks the family from content (an ordered table of
small rules; names never decide), then ``required`` lists what that family's library reads. One marker
of a family brings its whole required set: one bge-m3 head makes both heads required, so a fine-tune
missing one is refused as incomplete, naming the missing head. The rule that fired is kept in
``Manifest.inference`` (and the catalog), with any disagreement between the name and the files.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from registry.errors import ManifestError
from registry.manifest import required as req
from registry.manifest.rules import (
    BaseLookup, Evidence, Finding, ReadJson, RepoView, base_reference, check_base_fits, decide, name_hint,
)
from registry.manifest.schema import ComponentSpec, ImageSpec, Inference, Manifest, SmokeSpec

__all__ = ["BaseLookup", "ReadJson", "RepoView", "infer_manifest", "is_ignored", "family_from_files"]

is_ignored = req.is_ignored
ROTARY_BUFFERS = (r".*rotary_emb\.inv_freq$",)
VISUAL_FAMILIES = ("colqwen2", "colpali", "visualized-bge")

Parts = list["ComponentSpec | None"]


def _adapter_parts(ev: Evidence, family: str) -> Parts:
    repo, revision = base_reference(ev)
    check_base_fits(ev, family)
    own = req.tokenizer_and_processor(ev.repo)
    return req.adapter_files(ev.repo) + req.base_model(repo, revision, ev.base(), has_own_tokenizer=any(own)) + own


def _bge_m3_parts(ev: Evidence) -> Parts:
    parts = req.config(ev.repo) + req.weights(ev.repo) + req.bge_m3_heads(ev.repo) + req.tokenizer_and_processor(ev.repo)
    if "modules.json" in ev.repo.top:  # FlagEmbedding never reads them; kept for sentence-transformers users
        parts += req.sentence_transformers_modules(ev.repo, required=False)
    return parts


def _remote_code_parts(ev: Evidence) -> Parts:
    parts = req.transformers_model(ev.repo) + req.remote_code(ev.repo, ev.config or {}, ev.other_repo)
    if "modules.json" in ev.repo.top:
        parts += req.sentence_transformers_modules(ev.repo)
    return parts


BUILDERS: dict[str, Callable[[Evidence], Parts]] = {
    "bge-m3": _bge_m3_parts,
    "visualized-bge": lambda ev: req.visualized_bge(ev.repo),
    "remote-code": _remote_code_parts,
    "sentence-transformers": lambda ev: req.transformers_model(ev.repo) + req.sentence_transformers_modules(ev.repo),
}


def _components(ev: Evidence, found: Finding) -> tuple[ComponentSpec, ...]:
    if found.rule.startswith("adapter"):
        parts = _adapter_parts(ev, found.family)
    else:
        parts = BUILDERS.get(found.family, lambda e: req.transformers_model(e.repo))(ev)
    return tuple(c for c in parts if c is not None)


def _not_a_model(name: str) -> ManifestError:
    return ManifestError(
        f"{name}: no model files found (no config.json with weights, adapter_config.json, modules.json, bge-m3 "
        "heads or Visualized BGE weights); is this a model folder?", details={"file": None, "key": None})


def name_disagreement(name: str, found: Finding) -> tuple[str, ...]:
    hinted = name_hint(name)
    if hinted is None or hinted == found.family:
        return ()
    return (f"the name {name} suggests family {hinted}, but the files say {found.family} ({found.reason}): "
            "the files win",)


def family_from_files(name: str, paths: Sequence[str], read_json: ReadJson,
                      base_lookup: BaseLookup | None = None) -> Finding | None:
    """The family the files show (None when no rule fires), without building a manifest."""
    return decide(Evidence(RepoView(name, tuple(paths), read_json), base_lookup))


def infer_manifest(name: str, paths: Sequence[str], read_json: ReadJson,
                   base_lookup: BaseLookup | None = None) -> Manifest:
    """Build a manifest for repo ``name`` from its paths; ``read_json(path)`` reads a small JSON file and
    ``base_lookup(repo, revision)`` shows an adapter's base (None where it cannot be seen)."""
    ev = Evidence(RepoView(name, tuple(paths), read_json), base_lookup)
    found = decide(ev)
    if found is None:
        raise _not_a_model(name)
    components = _components(ev, found)
    if not components:
        raise _not_a_model(name)
    has_image = any(c.role == "processor" and any(f.path == "preprocessor_config.json" for f in c.files)
                    for c in components) or found.family in VISUAL_FAMILIES
    return Manifest(
        name=name, family=found.family, components=components,
        smoke=SmokeSpec(image=ImageSpec()) if has_image else SmokeSpec(),
        description="inferred from the repo's files", inferred=True, source="inferred",
        expected_missing_keys=ROTARY_BUFFERS if found.family == "remote-code" else (),
        inference=Inference(found.rule, found.reason, name_disagreement(name, found)),
    )
