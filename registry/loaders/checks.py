"""Checks after instantiation, shared by the families: every weight loaded, nothing extra, eval mode,
no gradients, nothing on ``meta``. Each failure raises SmokeFailed saying what and where."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from registry.errors import SmokeFailed

# Buffers that transformers computes at run time and never saves (beyond the manifest's own list).
RUNTIME_BUFFERS = (r"(^|\.)position_ids$", r"(^|\.)token_type_ids$", r"rotary_emb\.inv_freq$",
                   r"(^|\.)inv_freq$", r"original_inv_freq$")


def _unexpected(keys: Iterable[str], allowed: Sequence[str]) -> list[str]:
    patterns = [re.compile(p) for p in (*RUNTIME_BUFFERS, *allowed)]
    return sorted(k for k in keys if not any(p.search(k) for p in patterns))


def _refuse(check: str, what: str, keys: list[str], hint: str) -> SmokeFailed:
    shown = ", ".join(keys[:6]) + (f" (+{len(keys) - 6} more)" if len(keys) > 6 else "")
    return SmokeFailed(f"{what}: {shown}; {hint}", details={"check": check, "keys": keys[:50], "count": len(keys)})


def check_loading_info(info: Mapping[str, Any], expected_missing: Sequence[str], label: str) -> None:
    """transformers' ``output_loading_info``: no missing, unexpected or mismatched keys beyond the expected."""
    missing = _unexpected(info.get("missing_keys", ()), expected_missing)
    if missing:
        raise _refuse("missing_keys", f"{label}: weights missing from the checkpoint (they would be random)", missing,
                      "the files are not this architecture's weights, or a shard is absent")
    unexpected = _unexpected(info.get("unexpected_keys", ()), expected_missing)
    if unexpected:
        raise _refuse("unexpected_keys", f"{label}: weights in the checkpoint that no module uses", unexpected,
                      "the checkpoint was saved for another architecture or transformers version")
    mismatched = [str(m[0]) if isinstance(m, (tuple, list)) else str(m) for m in info.get("mismatched_keys", ())]
    if mismatched:
        raise _refuse("mismatched_keys", f"{label}: weights whose shapes do not fit the model", sorted(mismatched),
                      "the config does not match the weights")
    errors = [str(e) for e in info.get("error_msgs", ()) if e]
    if errors:
        raise SmokeFailed(f"{label}: loading reported errors: {'; '.join(errors[:3])}", details={"check": "load_errors"})


def saved_keys(files: Iterable[Path]) -> set[str]:
    """Tensor names in safetensors files (headers only) or pickles (``torch.load(weights_only=True)``)."""
    keys: set[str] = set()
    for path in files:
        if path.name.endswith(".safetensors"):
            from safetensors import safe_open

            with safe_open(str(path), framework="pt") as f:
                keys.update(f.keys())
        elif path.suffix in (".bin", ".pt", ".pth"):
            import torch

            keys.update(torch.load(path, map_location="meta", weights_only=True).keys())
    return keys


def check_state_keys(module: Any, files: Iterable[Path], expected_missing: Sequence[str], label: str) -> None:
    """For libraries that report nothing: compare the module's state dict with the saved tensor names."""
    saved = saved_keys(files)
    have = set(module.state_dict().keys())
    prefix = getattr(module, "base_model_prefix", "") or ""
    if prefix and saved and not (saved & have):
        # checkpoints of the bare encoder ("encoder.x") vs the model ("bert.encoder.x")
        saved = {k[len(prefix) + 1:] if k.startswith(prefix + ".") else k for k in saved}
    check_loading_info({"missing_keys": sorted(have - saved), "unexpected_keys": sorted(saved - have)},
                       expected_missing, label)


def finalize(model: Any, label: str) -> list[str]:
    """eval(), gradients off, then prove it: no parameter on ``meta``, no module left in training mode."""
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    on_meta = [n for n, t in (*model.named_parameters(), *model.named_buffers()) if t.device.type == "meta"]
    if on_meta:
        raise _refuse("meta", f"{label}: tensors left on 'meta' (never loaded)", on_meta,
                      "a weight file is missing or a stray .bin was preferred over the safetensors")
    training = [n or "(root)" for n, m in model.named_modules() if m.training]
    if training:
        raise _refuse("train_mode", f"{label}: modules still in training mode after eval() (dropout stays on)",
                      training, "the model's code overrides eval(); it cannot give reproducible outputs")
    grads = [n for n, p in model.named_parameters() if p.requires_grad]
    if grads:
        raise _refuse("grad", f"{label}: parameters still require gradients", grads, "the model's code re-enables them")
    return ["eval mode, gradients off, nothing on meta"]
