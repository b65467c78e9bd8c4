"""Family ``remote-code``: ``trust_remote_code=True`` only when every code file is pinned.

Pinned means: the manifest is curated (not inferred), its ``code`` component names every file with its
sha256 (a commit pin is not enough: the manifest itself must say which bytes may run), and every ``.py``
in the materialised folders belongs to that component. The code then runs with the loader's privileges, so anything less is refused before
transformers sees the folder."""

from __future__ import annotations

from typing import Any

from registry.errors import SmokeFailed
from registry.loaders import auto
from registry.loaders.base import Loaded, LoadRequest, Outputs
from registry.loaders.runtime import require
from registry.manifest.resolve import ResolvedManifest


def unpinned_code(resolved: ResolvedManifest) -> list[str]:
    """``role: path`` of each Python file that is not pinned by the manifest; empty when all are."""
    code = [c for c in resolved.components if c.role == "code"]
    if not code:
        return ["code: (no code component: the manifest must list the model's .py files with their sha256)"]
    bad = []
    for comp in resolved.components:
        for f in comp.files:
            if not f.path.endswith(".py"):
                continue
            if comp.role != "code":
                bad.append(f"{comp.role}: {f.path} (Python file outside the code component)")
            elif resolved.inferred or not comp.digest_pinned:
                bad.append(f"code: {f.path}")
    return bad


def load(request: LoadRequest) -> Loaded:
    bad = unpinned_code(request.resolved)
    if bad:
        raise SmokeFailed(
            f"{request.resolved.name}: refusing trust_remote_code: code not pinned by digest: {', '.join(bad)}; "
            "write a manifest that lists every .py file with its sha256 (registry show prints them)",
            details={"check": "remote_code", "unpinned": bad})
    transformers = require("transformers")
    folder = request.component_folder("weights", "config")
    model = auto.from_pretrained(transformers.AutoModel, folder, request.placement,
                                 expected_missing=request.resolved.expected_missing_keys, label=request.resolved.name,
                                 trust_remote_code=True)
    tokenizer = None
    if request.has_role("tokenizer"):
        tokenizer = auto.load_tokenizer(request.component_folder("tokenizer"), trust_remote_code=True)
    return Loaded("remote-code", model, tokenizer, request.placement,
                  checks=["every code file pinned by digest", "no missing or unexpected weights",
                          "eval mode, gradients off, nothing on meta"])


def smoke(loaded: Loaded, texts: tuple[str, ...], image: Any | None) -> Outputs:
    return auto.encode(loaded.model, loaded.processor, texts, loaded.placement.device)
