"""Which loader family a repo belongs to, judged from its files and never from its name.

An ordered table of rules (``RULES``, rendered in docs/manifests.md). Each rule is one small function
over the repo's evidence that returns a ``Finding`` (family + the reason, e.g. "colbert_linear.pt
present") or None. Rules of one ``group`` are alternatives: the first that fires speaks for the group.
Every group is evaluated, so markers of two families in one repo are seen and refused, whatever the
order; otherwise the first finding of a specific family wins, then sentence-transformers, then plain
transformers.

Pure: the repo (and an adapter's base) are read through ``RepoView.read_json`` callbacks.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from registry.errors import ManifestError
from registry.manifest.jsonread import expected_type
from registry.manifest.schema import REPO_ID_RE

ReadJson = Callable[[str], Any]

ADAPTER_CONFIG = "adapter_config.json"
HEAD_FILES = ("colbert_linear.pt", "sparse_linear.pt")
# colpali-engine's model classes, as ``architectures`` in config.json (and ``base_model_class`` in PEFT's
# auto_mapping) names them; None: recognised, but no loader family here for it yet
COLPALI_ARCHITECTURES: dict[str, str | None] = {
    "ColQwen2": "colqwen2", "ColPali": "colpali", "ColQwen2_5": None, "ColIdefics3": None, "ColQwen2_5Omni": None,
}
# bge-m3 is XLM-RoBERTa with positions stretched to 8192 tokens (+2): its fine-tunes keep that shape
BGE_M3_POSITIONS = 8194
VISUAL_PATTERN = "Visualized_*.pth"
# The text model each published Visualized BGE weight pairs with (FlagEmbedding research/visual_bge README).
VISUALIZED_TEXT_MODELS = {"Visualized_m3.pth": "BAAI/bge-m3", "Visualized_base_en_v1.5.pth": "BAAI/bge-base-en-v1.5"}
GENERIC_FAMILIES = ("transformers", "sentence-transformers")
# Words that make a repo's name look like a family; used only to report a disagreement, never to decide.
NAME_HINTS = {"bge-m3": ("bge-m3", "bge_m3"), "colqwen2": ("colqwen2",), "colpali": ("colpali",),
              "visualized-bge": ("visualized",)}


@dataclass(frozen=True)
class RepoView:
    """One repo revision as inference sees it: its paths and a reader for its small JSON files."""

    repo_id: str
    paths: tuple[str, ...]
    read_json: ReadJson = field(compare=False)
    revision: str | None = None

    @cached_property
    def top(self) -> frozenset[str]:
        return frozenset(p for p in self.paths if "/" not in p)

    def json(self, path: str) -> Any:
        """The parsed file, None when absent; a top level of the wrong type is refused here too, whatever
        reader was given (the strict one in jsonread already checks it)."""
        if path not in self.paths:
            return None
        value = self.read_json(path)
        wanted = expected_type(path)
        if value is not None and not isinstance(value, wanted):
            raise ManifestError(f"{self.repo_id}: {path}: the top level is a {type(value).__name__}, not a "
                                f"{wanted.__name__}", details={"file": path, "key": None})
        return value


# (base repo id, revision or None) -> the base as a RepoView, or None where it cannot be seen (not in
# the catalog yet, not on the endpoint): the adapter rules then use the adapter's own files only.
BaseLookup = Callable[[str, "str | None"], "RepoView | None"]


@dataclass(frozen=True)
class Finding:
    family: str
    rule: str
    reason: str


class Evidence:
    """What the rules read, each file at most once; the adapter's base is looked up only when asked."""

    def __init__(self, repo: RepoView, base_lookup: BaseLookup | None = None) -> None:
        self.repo = repo
        self._base_lookup = base_lookup
        self._base: RepoView | None = None
        self._base_done = False

    @cached_property
    def config(self) -> dict[str, Any] | None:
        return self.repo.json("config.json")

    @cached_property
    def adapter_config(self) -> dict[str, Any] | None:
        return self.repo.json(ADAPTER_CONFIG) if ADAPTER_CONFIG in self.repo.top else None

    @cached_property
    def base_ref(self) -> tuple[str, str | None] | None:
        """The base that adapter_config.json names (repo id, revision), when it is a usable repo id."""
        cfg = self.adapter_config
        if cfg is None:
            return None
        base = cfg.get("base_model_name_or_path")
        if not isinstance(base, str) or not REPO_ID_RE.match(base):
            return None
        revision = cfg.get("revision") if isinstance(cfg.get("revision"), str) else None
        return base, revision

    def base(self) -> RepoView | None:
        if not self._base_done:
            self._base_done = True
            if self.base_ref is not None and self._base_lookup is not None:
                self._base = self._base_lookup(*self.base_ref)
                if self._base is not None:
                    check_not_a_chain(self.repo, self._base)
        return self._base

    def other_repo(self, repo_id: str, revision: str | None = None) -> RepoView | None:
        """Another repo the files name (the code repo of an ``org/repo--module.Class`` auto_map entry), as the
        lookup sees it; None where it cannot be seen."""
        return None if self._base_lookup is None else self._base_lookup(repo_id, revision)

    def base_config(self) -> dict[str, Any] | None:
        base = self.base()
        return None if base is None else base.json("config.json")


def architectures(config: dict[str, Any] | None) -> list[str]:
    archs = (config or {}).get("architectures")
    return [a for a in archs if isinstance(a, str)] if isinstance(archs, list) else []


def _colpali_family(archs: Sequence[str], file: str, key: str) -> tuple[str, str] | None:
    """(family, architecture) for colpali-engine's classes; a class without a loader here is refused."""
    for arch in archs:
        if arch in COLPALI_ARCHITECTURES:
            family = COLPALI_ARCHITECTURES[arch]
            if family is None:
                raise ManifestError(
                    f"{file}: {key}: {arch!r} is a colpali-engine model that this registry has no loader family "
                    "for yet; it is refused rather than loaded as another family (pass --manifest FILE once its "
                    "family is supported)", details={"file": file, "key": key})
            return family, arch
    return None


# ---- the rules -----------------------------------------------------------------------------------

def adapter_over_colpali_base(ev: Evidence) -> Finding | None:
    if ev.adapter_config is None or ev.base_ref is None:
        return None
    base = ev.base_ref[0]
    found = _colpali_family(architectures(ev.base_config()), f"{base}/config.json", "architectures")
    return None if found is None else Finding(
        found[0], "adapter-base-architecture", f"{ADAPTER_CONFIG} over {base}, whose config.json architectures is {found[1]}")


def adapter_trained_on_colpali(ev: Evidence) -> Finding | None:
    base_class = ((ev.adapter_config or {}).get("auto_mapping") or {})
    base_class = base_class.get("base_model_class") if isinstance(base_class, dict) else None
    if not isinstance(base_class, str):
        return None
    found = _colpali_family([base_class], ADAPTER_CONFIG, "auto_mapping.base_model_class")
    return None if found is None else Finding(
        found[0], "adapter-auto-mapping", f"{ADAPTER_CONFIG} auto_mapping.base_model_class is {found[1]}")


def adapter(ev: Evidence) -> Finding | None:
    if ev.adapter_config is None:
        return None
    seen = "" if ev.base() is not None else " (its base was not available to read)"
    return Finding("peft", "adapter", f"{ADAPTER_CONFIG} present{seen}")


def colpali_architecture(ev: Evidence) -> Finding | None:
    found = _colpali_family(architectures(ev.config), "config.json", "architectures")
    return None if found is None else Finding(found[0], "colpali-architecture", f"config.json architectures is {found[1]}")


def bge_m3_head(ev: Evidence) -> Finding | None:
    present = [h for h in HEAD_FILES if h in ev.repo.top]
    return Finding("bge-m3", "bge-m3-head", f"{' and '.join(present)} present") if present else None


def bge_m3_config(ev: Evidence) -> Finding | None:
    cfg = ev.config or {}
    if (cfg.get("model_type") == "xlm-roberta" and architectures(cfg) == ["XLMRobertaModel"]
            and cfg.get("max_position_embeddings") == BGE_M3_POSITIONS):
        return Finding("bge-m3", "bge-m3-config",
                       f"config.json is an XLMRobertaModel with max_position_embeddings {BGE_M3_POSITIONS} "
                       "(bge-m3's encoder)")
    return None


def visualized_bge(ev: Evidence) -> Finding | None:
    visual = sorted(p for p in ev.repo.top if fnmatch.fnmatchcase(p, VISUAL_PATTERN))
    return Finding("visualized-bge", "visualized-bge", f"{', '.join(visual)} present") if visual else None


def remote_code(ev: Evidence) -> Finding | None:
    auto_map = (ev.config or {}).get("auto_map")
    if isinstance(auto_map, dict) and auto_map:
        return Finding("remote-code", "remote-code", f"config.json auto_map names {', '.join(sorted(auto_map))}")
    return None


def sentence_transformers(ev: Evidence) -> Finding | None:
    return Finding("sentence-transformers", "sentence-transformers", "modules.json present") \
        if "modules.json" in ev.repo.top else None


def transformers(ev: Evidence) -> Finding | None:
    if ev.config is None:
        return None
    archs = architectures(ev.config)
    what = f"architectures {', '.join(archs)}" if archs else f"model_type {ev.config.get('model_type')!r}"
    return Finding("transformers", "transformers", f"config.json ({what})")


@dataclass(frozen=True)
class Rule:
    group: str
    check: Callable[[Evidence], Finding | None]
    reads: str  # what it looks at, for the docs table


RULES: tuple[Rule, ...] = (
    Rule("adapter", adapter_over_colpali_base, "adapter_config.json, then the base's config.json `architectures` (ColQwen2 / ColPali)"),
    Rule("adapter", adapter_trained_on_colpali, "adapter_config.json `auto_mapping.base_model_class`"),
    Rule("adapter", adapter, "adapter_config.json"),
    Rule("colpali", colpali_architecture, "config.json `architectures` (ColQwen2 / ColPali)"),
    Rule("bge-m3", bge_m3_head, "`colbert_linear.pt` or `sparse_linear.pt` (one is enough)"),
    Rule("bge-m3", bge_m3_config, "config.json: `model_type` xlm-roberta, `architectures` [XLMRobertaModel], `max_position_embeddings` 8194"),
    Rule("visualized-bge", visualized_bge, "`Visualized_*.pth`"),
    Rule("remote-code", remote_code, "config.json `auto_map`"),
    Rule("sentence-transformers", sentence_transformers, "modules.json"),
    Rule("transformers", transformers, "config.json (`architectures`, `model_type`)"),
)


def findings(ev: Evidence) -> list[Finding]:
    """The first finding of each group, in table order."""
    out: dict[str, Finding] = {}
    for rule in RULES:
        if rule.group not in out and (found := rule.check(ev)) is not None:
            out[rule.group] = found
    return list(out.values())


def decide(ev: Evidence) -> Finding | None:
    """The family the files show, or a refusal when they show two; None when no rule fires."""
    found = findings(ev)
    specific = [f for f in found if f.family not in GENERIC_FAMILIES]
    families = {f.family for f in specific}
    if len(families) > 1:
        shown = "; ".join(f"{f.family} ({f.reason})" for f in specific)
        raise ManifestError(
            f"{ev.repo.repo_id}: the files carry markers of {len(families)} families: {shown}; one repo is one "
            "model: remove the stray files, or pass --manifest FILE naming the family",
            details={"file": None, "key": None, "families": sorted(families)})
    return specific[0] if specific else (found[0] if found else None)


def name_hint(name: str) -> str | None:
    lowered = name.lower()
    return next((family for family, words in NAME_HINTS.items() if any(w in lowered for w in words)), None)


# ---- adapters and their bases ------------------------------------------------------------------------

def check_not_a_chain(adapter_repo: RepoView, base: RepoView) -> None:
    """PEFT applies one adapter over a full model: a base that is itself an adapter is a chain or a cycle."""
    if ADAPTER_CONFIG not in base.top:
        return
    inner = base.json(ADAPTER_CONFIG) or {}
    named = inner.get("base_model_name_or_path")
    if named == adapter_repo.repo_id or base.repo_id == adapter_repo.repo_id:
        shape = f"a cycle: {adapter_repo.repo_id} -> {base.repo_id} -> {named}"
    else:
        shape = f"a chain: {adapter_repo.repo_id} -> {base.repo_id} -> {named}"
    raise ManifestError(
        f"{adapter_repo.repo_id}: {ADAPTER_CONFIG}: base_model_name_or_path is {base.repo_id}, which is itself an "
        f"adapter (its own {ADAPTER_CONFIG} names {named!r}): {shape}; an adapter applies to a full model: "
        "merge the inner adapter first (`registry merge`) and name the merged model as the base with --manifest",
        details={"file": ADAPTER_CONFIG, "key": "base_model_name_or_path", "base": base.repo_id})


def _targets(adapter_cfg: dict[str, Any]) -> list[str]:
    targets = adapter_cfg.get("target_modules")
    if isinstance(targets, str):
        return [targets]
    return [t for t in targets if isinstance(t, str)] if isinstance(targets, list) else []


def check_base_fits(ev: Evidence, family: str) -> None:
    """Refuse an adapter whose base's architecture is not the one the adapter was trained on."""
    cfg = ev.adapter_config
    base = ev.base()
    if cfg is None or base is None or ev.base_ref is None:
        return
    base_archs = architectures(base.json("config.json"))
    if not base_archs:
        return
    auto = cfg.get("auto_mapping")
    trained_on = auto.get("base_model_class") if isinstance(auto, dict) else None
    if isinstance(trained_on, str) and trained_on not in base_archs:
        raise ManifestError(
            f"{ev.repo.repo_id}: {ADAPTER_CONFIG}: auto_mapping.base_model_class is {trained_on}, but the base "
            f"{ev.base_ref[0]}'s config.json architectures is {base_archs}: the adapter was trained on another "
            "architecture; name the right base with --manifest",
            details={"file": ADAPTER_CONFIG, "key": "auto_mapping.base_model_class", "base": ev.base_ref[0]})
    # colpali-engine's projection head: PEFT silently drops a LoRA on it over a base that lacks it
    head_targets = [t for t in _targets(cfg) if "custom_text_proj" in t]
    if head_targets and family not in ("colqwen2", "colpali"):
        raise ManifestError(
            f"{ev.repo.repo_id}: {ADAPTER_CONFIG}: target_modules adapts custom_text_proj, the projection head of "
            f"colpali-engine's ColQwen2/ColPali, but the base {ev.base_ref[0]}'s config.json architectures is "
            f"{base_archs}, which has no such module: the adapter was trained on another architecture; name the "
            "right base with --manifest",
            details={"file": ADAPTER_CONFIG, "key": "target_modules", "base": ev.base_ref[0]})


def base_reference(ev: Evidence) -> tuple[str, str | None]:
    """The base adapter_config.json names, or a refusal saying why it cannot be used."""
    cfg = ev.adapter_config or {}
    base = cfg.get("base_model_name_or_path")
    details = {"file": ADAPTER_CONFIG, "key": "base_model_name_or_path"}
    if not isinstance(base, str) or not base:
        raise ManifestError(f"{ev.repo.repo_id}: {ADAPTER_CONFIG} has no base_model_name_or_path; write a manifest "
                            "that names the base", details=details)
    if ev.base_ref is None:
        # save_pretrained writes whatever path the base was loaded from, often a local one
        raise ManifestError(
            f"{ev.repo.repo_id}: {ADAPTER_CONFIG}: base_model_name_or_path is {base!r}, a local path rather than a "
            "repo id; write a manifest whose base component names the base repo (see docs/manifests.md) and pass "
            "it with --manifest", details=details)
    if ev.base_ref[0] == ev.repo.repo_id:
        raise ManifestError(f"{ev.repo.repo_id}: {ADAPTER_CONFIG}: base_model_name_or_path names the adapter's own "
                            f"repo: a cycle; write a manifest that names the base", details=details)
    return ev.base_ref

