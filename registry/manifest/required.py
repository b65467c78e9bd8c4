"""The files a family's library reads, as manifest components: one small builder per part.

Each builder takes the repo's view and returns components (required unless said otherwise). Only
what the library opens is required: one weight format (safetensors first, then pickles), never
``onnx/``, ``openvino/``, TF/Flax/Rust weights, ``checkpoint-*/`` or optimizer state. File names read
from the repo's JSON (index shards, module folders, code modules) must be clean relative paths.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Iterable

from registry.errors import ManifestError
from registry.manifest.rules import HEAD_FILES, VISUAL_PATTERN, VISUALIZED_TEXT_MODELS, RepoView
from registry.manifest.schema import ComponentSpec, FileSpec
from registry.paths import check_relative_path

TOKENIZER_FILES = (
    "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json", "vocab.json",
    "vocab.txt", "merges.txt", "sentencepiece.bpe.model", "spiece.model", "tokenizer.model", "source.spm", "target.spm",
)
PROCESSOR_FILES = (
    "preprocessor_config.json", "processor_config.json", "chat_template.json", "chat_template.jinja",
    "video_preprocessor_config.json",
)
CONFIG_FILES = ("config.json", "generation_config.json")
# sentence-transformers' Transformer module reads the first of these it finds (the legacy names included)
ST_MODULE_CONFIGS = ("sentence_bert_config.json", "sentence_roberta_config.json", "sentence_distilbert_config.json",
                     "sentence_camembert_config.json", "sentence_albert_config.json",
                     "sentence_xlm-roberta_config.json", "sentence_xlnet_config.json")
ST_CONFIG_FILES = ("modules.json", "config_sentence_transformers.json") + ST_MODULE_CONFIGS
IGNORED_DIRS = ("onnx/", "openvino/", "coreml/", "flax_model", "tf_model", "runs/", ".git/")
TRAINING_LEFTOVERS = ("optimizer.pt", "scheduler.pt", "rng_state.pth", "training_args.bin", "trainer_state.json")
# The weights of one model folder, in the order transformers prefers them: (index, single file).
WEIGHT_FORMATS = (("model.safetensors.index.json", "model.safetensors"),
                  ("pytorch_model.bin.index.json", "pytorch_model.bin"))
# Text-model files Visualized BGE reads (config + tokenizer only, never the text weights).
VISUALIZED_TEXT_FILES = {
    "BAAI/bge-m3": ("sentencepiece.bpe.model", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"),
    "BAAI/bge-base-en-v1.5": ("vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"),
}


def is_training_leftover(path: str) -> bool:
    first = path.split("/", 1)[0]
    return fnmatch.fnmatchcase(first, "checkpoint-*") or first in TRAINING_LEFTOVERS


def is_ignored(path: str) -> bool:
    """Files an inferred manifest never requires: training leftovers, other formats, git metadata."""
    return is_training_leftover(path) or path.startswith(IGNORED_DIRS)


def component(repo: str, role: str, files: Iterable[str], *, required: bool = True, note: str = "",
              revision: str | None = None, origin: str = "") -> ComponentSpec | None:
    """A component over ``files`` (None when there are none); names that come from JSON are checked."""
    names = list(dict.fromkeys(files))
    for f in names:
        try:
            check_relative_path(f)
        except ValueError as exc:
            raise ManifestError(f"{repo}: {origin or role}: names a file that cannot be used: {exc}",
                                details={"file": origin or None, "key": role}) from exc
    if not names:
        return None
    return ComponentSpec(role=role, repo=repo, revision=revision, files=tuple(FileSpec(f) for f in names),
                         required=required, note=note)


def _in_folder(folder: str, name: str) -> str:
    return f"{folder}/{name}" if folder else name


def _shards(view: RepoView, index_path: str) -> list[str]:
    index = view.json(index_path) or {}
    weight_map = index.get("weight_map")
    if not isinstance(weight_map, dict) or not weight_map:
        raise ManifestError(f"{view.repo_id}: {index_path}: weight_map: missing or empty; an index must map every "
                            "tensor to its shard", details={"file": index_path, "key": "weight_map"})
    bad = [k for k, v in weight_map.items() if not isinstance(v, str)]
    if bad:
        raise ManifestError(f"{view.repo_id}: {index_path}: weight_map.{bad[0]}: a shard name must be a string",
                            details={"file": index_path, "key": f"weight_map.{bad[0]}"})
    folder = index_path.rsplit("/", 1)[0] if "/" in index_path else ""
    return sorted({_in_folder(folder, v) for v in weight_map.values()})


def weight_files(view: RepoView, folder: str = "") -> tuple[list[str], str]:
    """One format's files for the model in ``folder`` (an index names every shard, present or not)."""
    for index, single in WEIGHT_FORMATS:
        if _in_folder(folder, index) in view.paths:
            return [_in_folder(folder, index)] + _shards(view, _in_folder(folder, index)), ""
        if _in_folder(folder, single) in view.paths:
            note = "pickle: loaded only with torch.load(weights_only=True)" if single.endswith(".bin") else ""
            return [_in_folder(folder, single)], note
    return [], ""


def weights(view: RepoView) -> list[ComponentSpec | None]:
    files, note = weight_files(view)
    if not files:  # required all the same: the refusal then names what is missing
        return [component(view.repo_id, "weights", ["model.safetensors"],
                          note="no weights in a format the library reads (safetensors, or pytorch_model.bin)")]
    return [component(view.repo_id, "weights", files, note=note, origin="model.safetensors.index.json")]


def config(view: RepoView) -> list[ComponentSpec | None]:
    return [component(view.repo_id, "config", [f for f in CONFIG_FILES if f in view.top])]


def tokenizer_and_processor(view: RepoView) -> list[ComponentSpec | None]:
    return [component(view.repo_id, "tokenizer", [f for f in TOKENIZER_FILES if f in view.top]),
            component(view.repo_id, "processor", [f for f in PROCESSOR_FILES if f in view.top])]


def transformers_model(view: RepoView) -> list[ComponentSpec | None]:
    return config(view) + weights(view) + tokenizer_and_processor(view)


def _module_folders(view: RepoView) -> list[str]:
    modules = view.json("modules.json")
    if not isinstance(modules, list):
        raise ManifestError(f"{view.repo_id}: modules.json is not a list of modules",
                            details={"file": "modules.json", "key": None})
    folders = []
    for i, module in enumerate(modules):
        path = module.get("path", "") if isinstance(module, dict) else None
        if not isinstance(path, str):
            raise ManifestError(f"{view.repo_id}: modules.json: [{i}].path: must be a folder name (a string)",
                                details={"file": "modules.json", "key": f"[{i}].path"})
        folder = path.rstrip("/")
        if folder:
            why = ("an absolute path" if folder.startswith("/") else
                   "'..' leaves the repo" if ".." in folder.split("/") else
                   "a backslash or control character" if any(c == "\\" or ord(c) < 0x20 or c == "\x7f"
                                                             for c in folder) else None)
            if why is not None:
                raise ManifestError(f"{view.repo_id}: modules.json: [{i}].path {path!r}: {why}; a module path must "
                                    "be a folder inside the model (like '1_Pooling'); nothing was recorded",
                                    details={"file": "modules.json", "key": f"[{i}].path"})
        folders.append(folder)
    return folders


OTHER_FORMAT_SUFFIXES = (".h5", ".msgpack", ".ot", ".onnx", ".onnx_data", ".gguf", ".tflite", ".mlmodel")


def _is_weight_file(name: str) -> bool:
    return (any(name in pair for pair in WEIGHT_FORMATS) or name.endswith(OTHER_FORMAT_SUFFIXES)
            or fnmatch.fnmatchcase(name, "model-*-of-*.safetensors")
            or fnmatch.fnmatchcase(name, "pytorch_model-*-of-*.bin"))


def _module_files(view: RepoView, folder: str) -> list[str]:
    """A module folder's files with one weight format: what sentence-transformers reads from it."""
    inside = [p for p in view.paths if p.startswith(folder + "/") and not is_ignored(p[len(folder) + 1:])]
    chosen, _ = weight_files(view, folder)
    return sorted({p for p in inside if not _is_weight_file(p.rsplit("/", 1)[-1])} | set(chosen))


def sentence_transformers_modules(view: RepoView, *, required: bool = True) -> list[ComponentSpec | None]:
    files = [f for f in ST_CONFIG_FILES if f in view.top]
    for folder in _module_folders(view):
        if folder:
            files.extend(_module_files(view, folder))
    return [component(view.repo_id, "config", sorted(set(files)), required=required,
                      note="sentence-transformers modules", origin="modules.json")]


def bge_m3_heads(view: RepoView) -> list[ComponentSpec | None]:
    # FlagEmbedding loads the heads only if BOTH files exist, else randomises both: one brings the other
    return [component(view.repo_id, "head", HEAD_FILES,
                      note="both heads or neither: FlagEmbedding silently randomises them otherwise")]


def visualized_bge(view: RepoView) -> list[ComponentSpec | None]:
    visual = sorted(p for p in view.top if fnmatch.fnmatchcase(p, VISUAL_PATTERN))
    if len(visual) > 1:
        raise ManifestError(
            f"{view.repo_id}: holds {len(visual)} Visualized BGE weights ({', '.join(visual)}), one per text "
            "model: which model is meant cannot be told from the files; pass --manifest FILE naming one (the "
            "curated BAAI/bge-visualized takes Visualized_m3.pth)", details={"file": visual[0], "key": None})
    text_repo = VISUALIZED_TEXT_MODELS.get(visual[0])
    if text_repo is None:
        raise ManifestError(
            f"{view.repo_id}: {visual[0]}: no known text model pairs with it (known: "
            f"{', '.join(VISUALIZED_TEXT_MODELS)}); pass --manifest FILE naming the text model's repo",
            details={"file": visual[0], "key": None})
    return [component(view.repo_id, "visual", visual, note="a pickle: loaded only with torch.load(weights_only=True)"),
            component(text_repo, "config", ["config.json"], note="the text model's config (never its weights)"),
            component(text_repo, "tokenizer", VISUALIZED_TEXT_FILES[text_repo])]


def _code_module(ref: str) -> tuple[str | None, str]:
    """``modeling_x.Cls`` -> (None, "modeling_x.py"); ``org/repo--modeling_x.Cls`` -> ("org/repo", ...)."""
    repo, _, module = ref.rpartition("--")
    return (repo or None), module.rsplit(".", 1)[0].replace(".", "/") + ".py"


def remote_code(view: RepoView, cfg: dict, lookup: Callable[[str], RepoView | None] | None = None
                ) -> list[ComponentSpec | None]:
    local: set[str] = set()
    remote: dict[str, set[str]] = {}
    for target in cfg.get("auto_map", {}).values():
        for ref in target if isinstance(target, list) else [target]:
            if isinstance(ref, str) and "." in ref:
                repo, module = _code_module(ref)
                (remote.setdefault(repo, set()) if repo else local).add(module)
    # modeling files import their siblings (CogVLM's visual.py, jina's custom_st.py): pin every top-level .py
    local.update(p for p in view.top if p.endswith(".py"))
    note = "remote code from auto_map: must be pinned by digest to load"
    out = [component(view.repo_id, "code", sorted(local), note=note, origin="config.json auto_map")]
    for repo, modules in sorted(remote.items()):
        # transformers fetches a module's relative imports from the same repo too: where that repo's listing
        # is visible, pin every top-level .py of it (the imports cannot be read from a listing)
        other = lookup(repo) if lookup is not None else None
        if other is not None:
            modules |= {p for p in other.top if p.endswith(".py")}
        out.append(component(repo, "code", sorted(modules), origin="config.json auto_map",
                             note=f"remote code that auto_map takes from {repo}: must be pinned by digest to load"))
    return out


def adapter_files(view: RepoView) -> list[ComponentSpec | None]:
    weights_file = next((f for f in ("adapter_model.safetensors", "adapter_model.bin") if f in view.top),
                        "adapter_model.safetensors")
    return [component(view.repo_id, "adapter", ["adapter_config.json", weights_file])]


def base_model(repo: str, revision: str | None, base: RepoView | None, *, has_own_tokenizer: bool
               ) -> list[ComponentSpec | None]:
    note = "from adapter_config.json base_model_name_or_path" + ("" if revision else " (unpinned)")
    if base is None:  # not visible yet: the component is resolved (and checked) where the base is
        return [ComponentSpec(role="base", repo=repo, revision=revision, note=note,
                              patterns=("config.json", "model*.safetensors*"))]
    files, _ = weight_files(base)
    out = [component(repo, "base", [f for f in CONFIG_FILES if f in base.top] + files, revision=revision, note=note)]
    if not has_own_tokenizer:  # the family library then reads the base's tokenizer and processor
        out += [component(repo, "tokenizer", [f for f in TOKENIZER_FILES if f in base.top], revision=revision),
                component(repo, "processor", [f for f in PROCESSOR_FILES if f in base.top], revision=revision)]
    return out
