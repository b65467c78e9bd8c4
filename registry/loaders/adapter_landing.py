"""The registry's own proof that an adapter landed, after the library loaded it.

PEFT loads an adapter with ``load_state_dict(strict=False)``: tensors whose names match no module are dropped
without a word, and those it expected but did not find only warn (peft 0.20 ``peft_model.py``
``PeftModel.from_pretrained``; ``utils/save_and_load.py`` ``set_peft_model_state_dict``). So after
``PeftModel.from_pretrained`` we rename every tensor of the adapter file exactly as PEFT renames it on the way
into the model, with PEFT's own functions in PEFT's order, and look each one up in the loaded model:

1. the key mapping (``load_peft_weights(..., key_mapping=)``): the model's ``_checkpoint_conversion_mapping``,
   applied after stripping ``base_model.model.`` (how colpali-engine's ColQwen2/ColPali map the
   transformers-4 layout ``model.layers.*`` to ``language_model.layers.*``);
2. under transformers 5, transformers' own weight conversions for the model type
   (``utils/transformers_weight_conversion.py`` ``convert_peft_adapter_state_dict_for_transformers``);
3. the auxiliary wrappers' load maps (``modules_to_save``) and the adapter name (``lora_A.weight`` ->
   ``lora_A.default.weight``, ``_insert_adapter_name_into_state_dict``), DoRA's renamed magnitude vector;
4. the ``base_model.model.`` prefix dropped when the model has none.

Then: every renamed tensor is in the model's state with its saved value (cast to the parameter's dtype, as
``copy_`` does), no two tensors landed on one name, and no adapter parameter of the model was left out of the
file (it would keep its initial value). Tensor-parallel sharding (``_maybe_shard_state_dict_for_tp``) only runs
under ``torch.distributed``, which the registry never starts.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from registry.errors import MissingExtra, SmokeFailed

ADAPTER_NAME = "default"
PREFIX = "base_model.model."


@dataclass(frozen=True)
class Landing:
    """What the comparison found; ``problems()`` says what is wrong, in words, with a check name each."""

    saved: int                               # tensors in the adapter file
    landed: int                              # found in the model with their saved value
    renamed: int                             # whose name the library's key mapping changed
    unmatched: tuple[tuple[str, str], ...]   # (saved name, name after the library's mapping): no such tensor
    collided: tuple[str, ...]                # saved names that landed on a name another saved tensor took
    differing: tuple[str, ...]               # saved names whose model tensor holds another value
    untouched: tuple[str, ...]               # adapter parameters of the model that no saved tensor sets


def library_key_mapping(base_model: Any, config: Any) -> dict[str, str] | None:
    """PEFT's rule in ``PeftModel.from_pretrained``: the model's ``_checkpoint_conversion_mapping``, except for
    prompt learning (whose keys have no ``base_model.model.`` prefix)."""
    if config.is_prompt_learning:
        return None
    return dict(getattr(base_model, "_checkpoint_conversion_mapping", None) or {})


def _peft_internals() -> tuple[Any, Any, Any, Any]:
    try:
        from peft.mapping import PEFT_TYPE_TO_PREFIX_MAPPING
        from peft.utils.other import AuxiliaryTrainingWrapper
        from peft.utils.save_and_load import _insert_adapter_name_into_state_dict, load_peft_weights
    except ImportError as exc:  # peft moved them: the check cannot be done faithfully, and is not faked
        raise MissingExtra(f"this peft version lacks what the registry's adapter check reuses ({exc}); install the "
                           "peft version pinned in .ci/constraints.txt",
                           details={"module": "peft", "extra": "ml"}) from exc
    return PEFT_TYPE_TO_PREFIX_MAPPING, AuxiliaryTrainingWrapper, _insert_adapter_name_into_state_dict, load_peft_weights


def _mapped_key(key: str, key_mapping: dict[str, str]) -> str:
    """One key through ``load_peft_weights``' mapping loop (peft 0.20 utils/save_and_load.py): the prefix off,
    the first pattern that matches applied, the prefix back on. Checked against PEFT's own output."""
    import re

    if not key_mapping:
        return key
    prefix = PREFIX if key.startswith(PREFIX) else "base_model." if key.startswith("base_model.") else ""
    rest = key.removeprefix(prefix)
    for pattern, replacement in key_mapping.items():
        new, count = re.subn(pattern, replacement, rest)
        if count:
            return prefix + new
    return key


def _transformers_conversion(model: Any, config: Any, state: dict[str, Any]) -> dict[str, Any]:
    from peft.import_utils import is_transformers_ge_v5

    if not (is_transformers_ge_v5 and hasattr(getattr(model, "config", None), "model_type")):
        return state
    from peft.utils.transformers_weight_conversion import convert_peft_adapter_state_dict_for_transformers

    return convert_peft_adapter_state_dict_for_transformers(model=model, peft_config=config,
                                                            adapter_state_dict=dict(state), adapter_name=ADAPTER_NAME)


def check_landing(model: Any, adapter_dir: Path, key_mapping: dict[str, str] | None, where: str) -> Landing:
    """Rename the adapter file's tensors as PEFT does and compare them with ``model`` (a loaded PeftModel)."""
    import torch

    prefixes, aux_wrapper, insert_name, load_weights = _peft_internals()
    config = model.peft_config[ADAPTER_NAME]
    prefix = prefixes.get(config.peft_type)
    if prefix is None:
        raise SmokeFailed(f"{where}: adapter type {config.peft_type} is not checked by the registry (only adapters "
                          "whose tensors PEFT loads by name, such as LoRA)", details={"check": "adapter_type"})
    saved = load_weights(str(adapter_dir), device="cpu")
    mapped = load_weights(str(adapter_dir), device="cpu", key_mapping=key_mapping) if key_mapping else saved
    into = {old: _mapped_key(old, key_mapping or {}) for old in saved}  # saved name -> name after the key mapping
    if set(into.values()) != set(mapped):
        raise MissingExtra("this peft version renames adapter keys differently from what the registry's check "
                           "expects; install the peft version pinned in .ci/constraints.txt",
                           details={"module": "peft", "extra": "ml"})
    origin = {new: old for old, new in into.items()}  # as in PEFT's dict: of two saved names, the later wins
    collided = tuple(sorted(set(into) - set(origin.values())))

    converted = _transformers_conversion(model, config, mapped)
    by_tensor = {id(v): origin[k] for k, v in mapped.items()}
    names = {k: (by_tensor.get(id(v), k), v) for k, v in converted.items()}  # name into the model -> (saved, tensor)
    renamed = sum(1 for k, (source, _) in names.items() if k != source)

    for module_name, module in model.named_modules():  # set_peft_model_state_dict's wrapper loop
        if isinstance(module, aux_wrapper):
            for old, new in module.adapter_state_dict_load_map(ADAPTER_NAME).items():
                if f"{module_name}.{old}" in names:
                    names[f"{module_name}.{new}"] = names.pop(f"{module_name}.{old}")
    final: dict[str, tuple[str, str, Any]] = {}  # state key -> (saved name, name before the adapter name, tensor)
    for key, (source, tensor) in names.items():
        (new_key,) = insert_name({key: tensor}, adapter_name=ADAPTER_NAME, parameter_prefix=prefix)
        if new_key.endswith(f"lora_magnitude_vector.{ADAPTER_NAME}"):  # DoRA's ParameterDict -> ModuleDict refactor
            new_key += ".weight"
        final[new_key] = (source, key, tensor)
    state = model.state_dict()
    if not any(k.startswith(PREFIX) for k in state):
        final = {k.removeprefix(PREFIX): v for k, v in final.items()}

    unmatched: list[tuple[str, str]] = []
    differing: list[str] = []
    for key, (source, mapped_name, tensor) in final.items():
        have = state.get(key)
        if have is None:
            unmatched.append((source, mapped_name))
        elif have.shape != tensor.shape or not torch.equal(have, tensor.to(device=have.device, dtype=have.dtype)):
            differing.append(source)
    adapter_params = {n for n, _ in model.named_parameters() if f".{ADAPTER_NAME}." in n or n.endswith(f".{ADAPTER_NAME}")}
    untouched = tuple(sorted(adapter_params - set(final)))
    landed = len(final) - len(unmatched) - len(differing)
    return Landing(len(saved), landed, renamed, tuple(sorted(unmatched)), collided, tuple(sorted(differing)), untouched)


def refuse(landing: Landing, where: str, hint: str) -> None:
    """Raise SmokeFailed for the first thing wrong in ``landing``; return when every tensor landed."""
    def some(items: tuple[str, ...]) -> str:
        return ", ".join(items[:3]) + (f" (+{len(items) - 3} more)" if len(items) > 3 else "")

    if landing.unmatched:
        shown = [saved if saved == name else f"{saved} (renamed to {name})" for saved, name in landing.unmatched]
        raise SmokeFailed(
            f"{where}: {len(landing.unmatched)} of {landing.saved} adapter tensors match no module of the base, e.g. "
            f"{some(tuple(shown))}{hint}; the library would drop them silently (saved under another transformers "
            "version with no key mapping for it, or for another base)",
            details={"check": "adapter_keys", "keys": [s for s, _ in landing.unmatched][:50],
                     "count": len(landing.unmatched)})
    if landing.collided:
        raise SmokeFailed(
            f"{where}: {len(landing.collided)} adapter tensors are renamed by the key mapping onto names other tensors "
            f"of the file already have, e.g. {some(landing.collided)}{hint}; only one of each pair could be applied "
            "(the file mixes two key layouts)", details={"check": "adapter_keys", "keys": list(landing.collided[:50])})
    if landing.differing:
        raise SmokeFailed(
            f"{where}: {len(landing.differing)} adapter tensors are in the model with values other than the file's, "
            f"e.g. {some(landing.differing)}{hint}", details={"check": "adapter_values",
                                                            "keys": list(landing.differing[:50])})
    if landing.untouched:
        raise SmokeFailed(
            f"{where}: {len(landing.untouched)} adapter parameters were not in the adapter file and stay at their "
            f"initial values, e.g. {some(landing.untouched)}{hint}",
            details={"check": "adapter_missing", "keys": list(landing.untouched[:50])})
