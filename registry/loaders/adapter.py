"""Family ``peft``: a LoRA adapter over the base that THE MANIFEST PINS (its ``base`` component's repo and
commit, materialised from the store), never over ``adapter_config.json``'s ``base_model_name_or_path``.

The adapter is applied by hand (``PeftModel`` + ``set_peft_model_state_dict``) so that the load report
can be checked: PEFT only warns about adapter keys that match no module, and never reports those left
at their initial values.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from registry.errors import SmokeFailed
from registry.loaders import auto
from registry.loaders.base import Loaded, LoadRequest, Outputs
from registry.loaders.checks import finalize
from registry.loaders.runtime import require


def apply_adapter(base_model: Any, adapter_dir: Path, *, pinned_base: str, label: str) -> Any:
    """Wrap ``base_model`` with the adapter in ``adapter_dir``; refuse unless every adapter tensor landed."""
    peft = require("peft")
    from peft.utils import load_peft_weights, set_peft_model_state_dict

    raw = json.loads((adapter_dir / "adapter_config.json").read_text())
    named_base = raw.get("base_model_name_or_path")
    config = peft.PeftConfig.from_pretrained(str(adapter_dir))
    config.base_model_name_or_path = pinned_base  # record what we actually used; the file's name is not trusted
    config.inference_mode = True
    where = f"{label}: adapter over the pinned base {pinned_base}"
    hint = f" (adapter_config.json names {named_base!r})" if named_base and named_base not in pinned_base else ""
    try:
        model = peft.PeftModel(base_model, config)
    except (ValueError, KeyError, TypeError) as exc:
        raise SmokeFailed(f"{where}: the adapter's target modules are not in the base: {exc}{hint}",
                          details={"check": "adapter_targets"}) from exc
    weights = load_peft_weights(str(adapter_dir), device="cpu")
    try:
        result = set_peft_model_state_dict(model, weights, adapter_name="default")
    except RuntimeError as exc:  # size mismatch: trained for another base
        first = str(exc).strip().splitlines()
        raise SmokeFailed(f"{where}: the adapter does not fit this base{hint}: "
                          f"{' '.join(line.strip() for line in first[:3])}",
                          details={"check": "adapter_shapes"}) from exc
    unapplied = sorted(result.unexpected_keys or ())
    if unapplied:
        raise SmokeFailed(
            f"{where}: {len(unapplied)} of {len(weights)} adapter tensors match no module of the base, e.g. "
            f"{', '.join(unapplied[:3])}{hint}; the adapter would be silently dropped (saved under another "
            "transformers version or for another base)",
            details={"check": "adapter_keys", "keys": unapplied[:50]})
    lora_params = {n for n, _ in model.named_parameters() if ".lora_" in n or ".modules_to_save." in n}
    untouched = sorted(k for k in (result.missing_keys or ()) if k in lora_params)
    if untouched:
        raise SmokeFailed(
            f"{where}: {len(untouched)} adapter parameters were not in the adapter file and stay at their initial "
            f"values, e.g. {', '.join(untouched[:3])}{hint}",
            details={"check": "adapter_missing", "keys": untouched[:50]})
    device = next(base_model.parameters()).device
    dtype = next(base_model.parameters()).dtype
    model.to(device=device, dtype=dtype)
    finalize(model, label)
    return model


def load(request: LoadRequest) -> Loaded:
    transformers = require("transformers")
    base = auto.from_pretrained(transformers.AutoModel, request.component_folder("base"), request.placement,
                                expected_missing=request.resolved.expected_missing_keys,
                                label=f"{request.resolved.name} base {request.base_label()}")
    model = apply_adapter(base, request.component_folder("adapter"), pinned_base=request.base_label(),
                          label=request.resolved.name)
    tokenizer = auto.load_tokenizer(request.component_folder("tokenizer", "base"))
    return Loaded("peft", model, tokenizer, request.placement,
                  checks=adapter_checks(request), without_adapter=model.disable_adapter)


def adapter_checks(request: LoadRequest) -> list[str]:
    return [f"base {request.base_label()} loaded with no missing or unexpected weights",
            "every adapter tensor applied to a module of the pinned base",
            "eval mode, gradients off, nothing on meta"]


def smoke(loaded: Loaded, texts: tuple[str, ...], image: Any | None) -> Outputs:
    return auto.encode(loaded.model, loaded.processor, texts, loaded.placement.device)
