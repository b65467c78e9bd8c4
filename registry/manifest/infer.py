"""Infer a manifest for a repo with no curated one, from its file list and its small JSON files.

Rules (each component is marked inferred):
- ``adapter_config.json`` ⇒ adapter (+ its weights) and a base from ``base_model_name_or_path``;
- ``model.safetensors.index.json`` ⇒ the index and every shard it names;
- ``modules.json`` ⇒ the sentence-transformers module folders;
- ``*_linear.pt`` ⇒ heads (bge-m3 needs both ``colbert_linear.pt`` and ``sparse_linear.pt``);
- ``auto_map`` in config.json ⇒ the code files it names (remote code).
Training leftovers (``checkpoint-*/``), ``onnx/`` and alternative weight formats are never required.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Sequence
from typing import Any

from registry.errors import ManifestError
from registry.paths import check_relative_path
from registry.manifest.schema import REPO_ID_RE, ComponentSpec, FileSpec, ImageSpec, Manifest, SmokeSpec

ReadJson = Callable[[str], "dict[str, Any] | None"]

TOKENIZER_FILES = (
    "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json", "vocab.json",
    "vocab.txt", "merges.txt", "sentencepiece.bpe.model", "spiece.model", "tokenizer.model", "source.spm", "target.spm",
)
PROCESSOR_FILES = (
    "preprocessor_config.json", "processor_config.json", "chat_template.json", "chat_template.jinja",
    "video_preprocessor_config.json",
)
CONFIG_FILES = ("config.json", "generation_config.json")
IGNORED_DIRS = ("onnx/", "openvino/", "coreml/", "flax_model", "tf_model", "runs/", ".git/")
HEAD_SUFFIX = "_linear.pt"


def _is_training_leftover(path: str) -> bool:
    first = path.split("/", 1)[0]
    return fnmatch.fnmatchcase(first, "checkpoint-*") or first in ("optimizer.pt", "scheduler.pt", "rng_state.pth")


def _top_level(paths: Sequence[str]) -> set[str]:
    return {p for p in paths if "/" not in p}


def infer_manifest(name: str, paths: Sequence[str], read_json: ReadJson) -> Manifest:
    """Build a manifest for repo ``name`` from its paths; ``read_json(path)`` reads a small JSON file."""
    present = set(paths)
    top = _top_level(paths)
    components: list[ComponentSpec] = []
    family = "transformers"
    smoke = SmokeSpec()

    def comp(role: str, files: list[str], *, repo: str = name, revision: str | None = None, required: bool = True,
             note: str = "") -> None:
        for f in files:  # names read from JSON files (index, modules, auto_map) must stay inside the repo
            try:
                check_relative_path(f)
            except ValueError as exc:
                raise ManifestError(f"{name}: a {role} file named by the repo's own JSON is unusable: {exc}",
                                    details={"file": None, "key": role}) from exc
        if files:
            components.append(ComponentSpec(role=role, repo=repo, revision=revision,
                                            files=tuple(FileSpec(f) for f in files), required=required, note=note))

    config = read_json("config.json") if "config.json" in present else None
    adapter_cfg = read_json("adapter_config.json") if "adapter_config.json" in present else None

    # -- adapter + base --------------------------------------------------------------------------
    if adapter_cfg is not None:
        base = adapter_cfg.get("base_model_name_or_path")
        weights = [f for f in ("adapter_model.safetensors", "adapter_model.bin") if f in top][:1]
        comp("adapter", ["adapter_config.json"] + (weights or ["adapter_model.safetensors"]))
        if not isinstance(base, str) or not base:
            raise ManifestError(
                f"{name}: adapter_config.json has no base_model_name_or_path; write a manifest that names the base",
                details={"file": "adapter_config.json", "key": "base_model_name_or_path"},
            )
        if not REPO_ID_RE.match(base):
            # save_pretrained writes whatever path the base was loaded from, often a local one
            raise ManifestError(
                f"{name}: adapter_config.json: base_model_name_or_path is {base!r}, a local path rather than a repo "
                "id; write a manifest whose base component names the base repo (see docs/manifests.md) and pass "
                "it with --manifest",
                details={"file": "adapter_config.json", "key": "base_model_name_or_path"},
            )
        revision = adapter_cfg.get("revision") if isinstance(adapter_cfg.get("revision"), str) else None
        components.append(ComponentSpec(
            role="base", repo=base, revision=revision,
            patterns=("config.json", "model*.safetensors*"),
            note="from adapter_config.json base_model_name_or_path (unpinned)",
        ))
        family = "peft"
        if "colqwen" in base.lower():
            family = "colqwen2"
        elif "colpali" in base.lower():
            family = "colpali"

    # -- weights ---------------------------------------------------------------------------------
    elif "model.safetensors.index.json" in top:
        index = read_json("model.safetensors.index.json") or {}
        weight_map = index.get("weight_map")
        if not isinstance(weight_map, dict) or not weight_map:
            raise ManifestError(
                f"{name}: model.safetensors.index.json has no weight_map",
                details={"file": "model.safetensors.index.json", "key": "weight_map"},
            )
        shards = sorted({str(v) for v in weight_map.values()})
        comp("weights", ["model.safetensors.index.json"] + shards)
    elif "model.safetensors" in top:
        comp("weights", ["model.safetensors"])
    elif "pytorch_model.bin" in top:
        comp("weights", ["pytorch_model.bin"], note="pickle: loaded only with torch.load(weights_only=True)")

    if config is not None:
        comp("config", [f for f in CONFIG_FILES if f in top])

    # -- sentence-transformers -------------------------------------------------------------------
    if "modules.json" in top:
        modules = read_json("modules.json")
        if not isinstance(modules, list):
            raise ManifestError(f"{name}: modules.json is not a list of modules", details={"file": "modules.json", "key": None})
        st_files = ["modules.json"] + [f for f in ("sentence_bert_config.json", "config_sentence_transformers.json") if f in top]
        for module in modules:
            folder = str(module.get("path", "")) if isinstance(module, dict) else ""
            if folder:
                st_files.extend(sorted(p for p in present if p.startswith(folder.rstrip("/") + "/")))
        comp("config", sorted(set(st_files)), note="sentence-transformers modules")
        family = "sentence-transformers"

    # -- heads -----------------------------------------------------------------------------------
    heads = sorted(p for p in top if p.endswith(HEAD_SUFFIX))
    if heads:
        comp("head", heads)
        if {"colbert_linear.pt", "sparse_linear.pt"} <= set(heads):
            family = "bge-m3"

    # -- remote code -----------------------------------------------------------------------------
    auto_map = (config or {}).get("auto_map")
    if isinstance(auto_map, dict) and auto_map:
        code: set[str] = set()
        for target in auto_map.values():
            for ref in target if isinstance(target, list) else [target]:
                if isinstance(ref, str) and "." in ref and "--" not in ref:
                    code.add(ref.rsplit(".", 1)[0].replace(".", "/") + ".py")
        # modeling files import their siblings (CogVLM's visual.py, util.py): pin every top-level .py
        code.update(p for p in top if p.endswith(".py"))
        comp("code", sorted(code), note="remote code from auto_map: must be pinned by digest to load")
        family = "remote-code"

    # -- tokenizer / processor ---------------------------------------------------------------------
    comp("tokenizer", [f for f in TOKENIZER_FILES if f in top])
    processor = [f for f in PROCESSOR_FILES if f in top]
    comp("processor", processor)
    if "preprocessor_config.json" in top:
        smoke = SmokeSpec(texts=smoke.texts, image=ImageSpec())

    if not components:
        raise ManifestError(
            f"{name}: no model files found (no config.json, weights, adapter_config.json or modules.json); "
            "is this a model folder?",
            details={"file": None, "key": None},
        )
    return Manifest(
        name=name, family=family, components=tuple(components), smoke=smoke,
        description="inferred from the repo's files", inferred=True, source="inferred",
        expected_missing_keys=(r".*rotary_emb\.inv_freq$",) if family == "remote-code" else (),
    )


def is_ignored(path: str) -> bool:
    """Files an inferred manifest never requires: training leftovers, other formats, git metadata."""
    return _is_training_leftover(path) or path.startswith(IGNORED_DIRS)
