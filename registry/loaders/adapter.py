"""Family ``peft``: a LoRA adapter over the base that THE MANIFEST PINS (its ``base`` component's repo and
commit, materialised from the store), never over ``adapter_config.json``'s ``base_model_name_or_path``.

The adapter is applied the way its library applies it: ``PeftModel.from_pretrained(base, adapter_dir)`` with
PEFT's own key mapping (the base's ``_checkpoint_conversion_mapping``; transformers 5's weight conversions
inside ``set_peft_model_state_dict``). For plain PEFT adapters the base class follows the adapter's
``task_type`` as PEFT's ``AutoPeftModelFor*`` classes choose it (``CAUSAL_LM`` -> ``AutoModelForCausalLM``...),
or the transformers class its ``auto_mapping`` names. colpali.py passes colpali-engine's ColQwen2/ColPali as
the base. Then the registry's own check (adapter_landing.py): every tensor of the adapter file is in the
loaded model, under the name the library gave it, with its saved value, and no adapter parameter was left
out. PEFT itself drops unmatched tensors silently and only warns about missing ones.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from registry.errors import SmokeFailed
from registry.loaders import auto
from registry.loaders.adapter_landing import Landing, check_landing, library_key_mapping, refuse
from registry.loaders.base import Loaded, LoadRequest, Outputs
from registry.loaders.checks import finalize
from registry.loaders.runtime import import_torch, require
from registry.manifest.jsonread import parse_json

# Only classes of this library are imported from auto_mapping (PEFT's own allowlist also has diffusers etc.)
AUTO_MAPPING_LIBRARY = "transformers"


def adapter_config(adapter_dir: Path) -> dict[str, Any]:
    # the strict reader: the gate refused this file at add if it was not a plain JSON object
    return parse_json((adapter_dir / "adapter_config.json").read_bytes(), "adapter_config.json")


def base_class(raw_config: dict[str, Any]) -> Any:
    """The class PEFT's AutoPeftModel would load the base with (peft 0.20 ``auto.py``)."""
    import_torch()
    transformers = require("transformers")
    from peft import auto as peft_auto

    task_type = raw_config.get("task_type")
    if task_type:
        wanted = peft_auto.MODEL_TYPE_TO_PEFT_MODEL_MAPPING.get(task_type)
        for name in dir(peft_auto):
            cls = getattr(peft_auto, name)
            if name.startswith("AutoPeftModelFor") and getattr(cls, "_target_peft_class", None) is wanted:
                return cls._target_class
        raise SmokeFailed(f"adapter_config.json: task_type {task_type!r} is not one PEFT knows "
                          f"({', '.join(peft_auto.MODEL_TYPE_TO_PEFT_MODEL_MAPPING)})",
                          details={"check": "adapter_config", "key": "task_type"})
    mapping = raw_config.get("auto_mapping")
    if isinstance(mapping, dict):
        library, name = str(mapping.get("parent_library", "")), str(mapping.get("base_model_class", ""))
        if (library == AUTO_MAPPING_LIBRARY or library.startswith(AUTO_MAPPING_LIBRARY + ".")) \
                and hasattr(transformers, name):
            return getattr(transformers, name)
    return transformers.AutoModel


def apply_adapter(base_model: Any, adapter_dir: Path, *, pinned_base: str, label: str) -> tuple[Any, Landing]:
    """``PeftModel.from_pretrained`` over ``base_model``; refuse unless every adapter tensor landed."""
    peft = require("peft")

    named_base = adapter_config(adapter_dir).get("base_model_name_or_path")
    config = peft.PeftConfig.from_pretrained(str(adapter_dir))
    config.base_model_name_or_path = pinned_base  # record what we actually used; the file's name is not trusted
    where = f"{label}: adapter over the pinned base {pinned_base}"
    hint = f" (adapter_config.json names {named_base!r})" if named_base and named_base not in pinned_base else ""
    key_mapping = library_key_mapping(base_model, config)
    device = next(base_model.parameters()).device
    try:
        model = peft.PeftModel.from_pretrained(base_model, str(adapter_dir), config=config, is_trainable=False,
                                               key_mapping=key_mapping, torch_device=str(device))
    except (ValueError, KeyError, TypeError) as exc:
        raise SmokeFailed(f"{where}: the adapter's target modules are not in the base: {exc}{hint}",
                          details={"check": "adapter_targets"}) from exc
    except RuntimeError as exc:  # size mismatch: trained for another base
        first = str(exc).strip().splitlines()
        raise SmokeFailed(f"{where}: the adapter does not fit this base{hint}: "
                          f"{' '.join(line.strip() for line in first[:3])}",
                          details={"check": "adapter_shapes"}) from exc
    landing = check_landing(model, adapter_dir, key_mapping, where)
    refuse(landing, where, hint)
    finalize(model, label)
    return model, landing


def load(request: LoadRequest) -> Loaded:
    adapter_dir = request.component_folder("adapter")
    base = auto.from_pretrained(base_class(adapter_config(adapter_dir)), request.component_folder("base"),
                                request.placement, expected_missing=request.resolved.expected_missing_keys,
                                label=f"{request.resolved.name} base {request.base_label()}")
    model, landing = apply_adapter(base, adapter_dir, pinned_base=request.base_label(), label=request.resolved.name)
    tokenizer = auto.load_tokenizer(request.component_folder("tokenizer", "base"))
    return Loaded("peft", model, tokenizer, request.placement,
                  checks=adapter_checks(request, landing, type(base).__name__), without_adapter=model.disable_adapter)


def adapter_checks(request: LoadRequest, landing: Landing, base_class_name: str) -> list[str]:
    renamed = f", {landing.renamed} renamed by the library's key mapping" if landing.renamed else ""
    return [f"base {request.base_label()} loaded as {base_class_name} with no missing or unexpected weights",
            "every adapter tensor applied to a module of the pinned base: "
            f"{landing.landed} of {landing.saved} found in the loaded model with their saved values{renamed}",
            "eval mode, gradients off, nothing on meta"]


def smoke(loaded: Loaded, texts: tuple[str, ...], image: Any | None) -> Outputs:
    return auto.encode(loaded.model, loaded.processor, texts, loaded.placement.device)
