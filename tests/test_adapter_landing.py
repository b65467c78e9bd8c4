"""Adapters applied the way their libraries apply them, then the registry's own landing check, with the real
libraries on CPU: colpali's LoRA over a tiny ColQwen2 in the published transformers-4 key layout and in the
current one; files that mix layouts or lack a tensor; and PEFT silently dropping a whole adapter."""

from __future__ import annotations

import pytest

from tests.adapter_layouts import (TRANSFORMERS4_TEXT, build_qwen2_vl_lm_lora, colpali_documented,  # noqa: F401
                                   colpali_reference, colqwen2_layouts, max_abs_difference, text_batch)
from tests.models_helpers import colqwen2_models  # noqa: F401

pytestmark = [pytest.mark.ml]


def _placement():
    from registry.loaders.runtime import place

    return place("cpu", "float32")


def _apply(base_dir, adapter_dir, base_class=None):
    from registry.loaders import adapter, auto
    from registry.loaders.colpali import colpali_class

    cls = base_class or colpali_class("colqwen2")
    base = auto.from_pretrained(cls, base_dir, _placement(), expected_missing=(), label="tiny base")
    return adapter.apply_adapter(base, adapter_dir, pinned_base="acme/base@0123", label="acme/lora")


@pytest.mark.colpali
@pytest.mark.parametrize("layout", ["transformers4", "transformers5"])
def test_both_key_layouts_land_and_equal_colpali_engines_own_loading(colqwen2_layouts, layout, tmp_path):
    import torch
    from safetensors import safe_open

    adapter_dir = colqwen2_layouts[layout]
    with safe_open(str(adapter_dir / "adapter_model.safetensors"), framework="pt") as f:
        keys = sorted(f.keys())
    assert len(keys) == 30  # 2 layers x 7 projections x (A, B) + custom_text_proj (A, B)
    assert any(k.startswith(TRANSFORMERS4_TEXT + "layers.0.") for k in keys) == (layout == "transformers4")
    model, landing = _apply(colqwen2_layouts["base"], adapter_dir)
    assert (landing.saved, landing.landed) == (30, 30)
    assert landing.renamed == (28 if layout == "transformers4" else 0)  # ColQwen2's _checkpoint_conversion_mapping
    assert not (landing.unmatched or landing.collided or landing.differing or landing.untouched)

    batch = text_batch(colqwen2_layouts["base"])
    with torch.inference_mode():
        ours = model(**batch)
        with model.disable_adapter():
            bare = model(**batch)
    assert max_abs_difference(ours, bare) > 1e-3  # the adapter changes the output
    reference = colpali_reference(colqwen2_layouts["base"], adapter_dir, batch)
    assert max_abs_difference(ours, reference) <= 1e-6
    documented = colpali_documented(colqwen2_layouts["base"], adapter_dir, tmp_path / "doc", batch)
    assert max_abs_difference(ours, documented) <= 1e-6
    # the two layouts hold the same tensors: the same model either way
    other = colpali_reference(colqwen2_layouts["base"], colqwen2_layouts[
        "transformers5" if layout == "transformers4" else "transformers4"], batch)
    assert max_abs_difference(ours, other) <= 1e-6


@pytest.mark.colpali
def test_a_file_that_mixes_both_layouts_is_refused(colqwen2_layouts):
    from registry.errors import SmokeFailed

    with pytest.raises(SmokeFailed) as info:
        _apply(colqwen2_layouts["base"], colqwen2_layouts["mixed"])
    msg = info.value.message
    assert info.value.details["check"] == "adapter_keys"
    assert "28 adapter tensors are renamed by the key mapping onto names other tensors of the file already have" in msg
    assert "(the file mixes two key layouts)" in msg


@pytest.mark.colpali
def test_a_missing_tensor_is_refused_not_left_at_its_initial_value(colqwen2_layouts):
    from registry.errors import SmokeFailed

    with pytest.raises(SmokeFailed) as info:
        _apply(colqwen2_layouts["base"], colqwen2_layouts["missing"])
    assert info.value.details["check"] == "adapter_missing"
    assert ("1 adapter parameters were not in the adapter file and stay at their initial values, e.g. "
            "base_model.model.custom_text_proj.lora_B.default.weight") in info.value.message


@pytest.mark.colpali
def test_a_tensor_changed_after_loading_is_caught(colqwen2_layouts):
    import torch

    from registry.loaders.adapter_landing import check_landing, library_key_mapping

    model, _ = _apply(colqwen2_layouts["base"], colqwen2_layouts["transformers4"])
    target = model.base_model.model.custom_text_proj.lora_A["default"].weight
    with torch.no_grad():
        target.add_(1.0)
    landing = check_landing(model, colqwen2_layouts["transformers4"],
                            library_key_mapping(model.get_base_model(), model.peft_config["default"]), "x")
    assert landing.differing == ("base_model.model.custom_text_proj.lora_A.weight",)
    assert landing.landed == 29


def test_peft_dropping_a_whole_adapter_silently_is_refused(colqwen2_models, tmp_path):
    """A plain LoRA over Qwen2VLForConditionalGeneration saved under transformers 4 (``model.layers``): peft 0.20
    looks up transformers' renaming by model type ('qwen2_vl'), while transformers registers it under the class
    name, so PeftModel.from_pretrained applies none of it and says nothing. The registry refuses."""
    import torch
    from peft import PeftModel
    from transformers import Qwen2VLForConditionalGeneration

    from registry.errors import SmokeFailed

    base_dir, adapter_dir = build_qwen2_vl_lm_lora(colqwen2_models["base"], tmp_path)
    plain = PeftModel.from_pretrained(Qwen2VLForConditionalGeneration.from_pretrained(str(base_dir)), str(adapter_dir))
    assert all(torch.count_nonzero(p) == 0 for n, p in plain.named_parameters() if ".lora_B." in n)  # all dropped
    with pytest.raises(SmokeFailed) as info:
        _apply(base_dir, adapter_dir, base_class=Qwen2VLForConditionalGeneration)
    msg = info.value.message
    assert info.value.details["check"] == "adapter_keys"
    assert "acme/lora: adapter over the pinned base acme/base@0123: 8 of 8 adapter tensors match no module" in msg
    assert "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight" in msg
    assert "the library would drop them silently" in msg
