"""A plain PEFT LoRA (task_type CAUSAL_LM, as trainers save it) over a tiny Qwen2 causal LM: the base is loaded
with the class PEFT's AutoPeftModelForCausalLM uses, the adapter lands whole, and the registered model's logits
equal PEFT's own ``PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base), adapter)``."""

from __future__ import annotations

import pytest

from tests.adapter_layouts import TEXTS, build_causal_lm_lora, build_tiny_qwen2_lm, max_abs_difference, text_batch
from tests.models_helpers import SQLITE_ONLY, add_base_and_adapter

pytestmark = [pytest.mark.ml, SQLITE_ONLY]


@pytest.fixture(scope="module")
def qwen2_lm(tmp_path_factory):
    from registry.loaders.runtime import import_torch

    import_torch()
    root = tmp_path_factory.mktemp("qwen2-lm")
    base = build_tiny_qwen2_lm(root / "base")
    return base, build_causal_lm_lora(base, root / "lora")


def test_causal_lm_lora_registers_and_equals_peft(reg, cli, tmp_path, qwen2_lm):
    import torch
    from peft import PeftModel
    from safetensors import safe_open
    from transformers import AutoModelForCausalLM

    import registry

    base_dir, adapter_dir = qwen2_lm
    with safe_open(str(adapter_dir / "adapter_model.safetensors"), framework="pt") as f:
        keys = sorted(f.keys())
    assert "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight" in keys  # Qwen2ForCausalLM's layout
    assert "base_model.model.lm_head.lora_B.weight" in keys and len(keys) == 30
    base, _ = add_base_and_adapter(reg, tmp_path, base=base_dir, adapter=adapter_dir, family="peft",
                                   base_family="transformers", base_name="acme/qwen2-tiny", name="acme/qwen2-lora")
    r = cli("register", "acme/qwen2-lora", "--json")
    assert r.exit_code == 0, r.stderr
    smoke = r.json()["smoke"]
    assert list(smoke["output_shapes"]) == ["logits"] and smoke["adapter_effect"] > 0
    assert f"base acme/qwen2-tiny@{base.commit} loaded as Qwen2ForCausalLM with no missing or unexpected weights" \
        in smoke["checks"]
    assert "every adapter tensor applied to a module of the pinned base: 30 of 30 found in the loaded model with " \
           "their saved values" in smoke["checks"]

    model, _tok = registry.load("acme/qwen2-lora", device="cpu", registry=reg)
    assert model.peft_config["default"].base_model_name_or_path == f"acme/qwen2-tiny@{base.commit}"
    batch = text_batch(base_dir, TEXTS)
    reference = PeftModel.from_pretrained(
        AutoModelForCausalLM.from_pretrained(str(base_dir), attn_implementation="eager"), str(adapter_dir)).eval()
    with torch.inference_mode():
        assert max_abs_difference(model(**batch).logits, reference(**batch).logits) <= 1e-6


def test_unknown_task_type_is_a_clear_refusal(reg, cli, tmp_path, qwen2_lm):
    import json
    import shutil

    base_dir, adapter_dir = qwen2_lm
    odd = tmp_path / "odd"
    shutil.copytree(adapter_dir, odd)
    config = json.loads((odd / "adapter_config.json").read_text())
    config["task_type"] = "IMAGE_TO_POEM"
    (odd / "adapter_config.json").write_text(json.dumps(config))
    add_base_and_adapter(reg, tmp_path, base=base_dir, adapter=odd, family="peft", base_family="transformers",
                         base_name="acme/qwen2-tiny", name="acme/qwen2-odd")
    r = cli("register", "acme/qwen2-odd")
    assert r.exit_code == 11
    assert "adapter_config.json: task_type 'IMAGE_TO_POEM' is not one PEFT knows (SEQ_CLS, " in r.stderr
