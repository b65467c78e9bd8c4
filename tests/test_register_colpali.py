"""Tiny ColQwen2 + LoRA (colpali's target regex) through colpali-engine: registered over its pinned base in
the published transformers-4 key layout (vidore's ``model.layers.*``) and in the current one, with outputs
equal to colpali-engine's own loading; an adapter whose keys match no module of the base refused (colpali #424)."""

from __future__ import annotations

import pytest

from registry.loaders.runtime import vision_available
from tests.adapter_layouts import (TEXTS, colpali_reference, colqwen2_layouts, max_abs_difference,  # noqa: F401
                                   text_batch)
from tests.models_helpers import SQLITE_ONLY, add_base_and_adapter, colqwen2_models  # noqa: F401,F811

pytestmark = [pytest.mark.ml, pytest.mark.colpali, SQLITE_ONLY]


def test_colqwen2_adapter_registers_over_the_pinned_base(reg, cli, tmp_path, colqwen2_models):
    base, adapter = add_base_and_adapter(reg, tmp_path, base=colqwen2_models["base"],
                                         adapter=colqwen2_models["adapter"], family="colqwen2",
                                         base_family="colqwen2", name="acme/colqwen2-lora", image=(56, 56, 0))
    assert {c.role: c.pinned for c in adapter.components}["base"] is True
    r = cli("register", "acme/colqwen2-lora", "--json")
    assert r.exit_code == 0, r.stderr
    smoke = r.json()["smoke"]
    assert smoke["output_shapes"]["query_embeddings"][0] == 2 and smoke["output_shapes"]["query_embeddings"][2] == 128
    assert smoke["adapter_effect"] > 0
    assert ("every adapter tensor applied to a module of the pinned base: 30 of 30 found in the loaded model with "
            "their saved values") in smoke["checks"]
    if vision_available():  # the GPU machine: the processor path with the synthetic image
        assert "image_embeddings" in smoke["output_shapes"] and smoke["output_shapes"]["scores"] == [2, 1]
    else:  # CPU torch beside a CUDA torchvision: degraded, and said so
        assert smoke["notes"] == ["torchvision unavailable: smoke on text queries through the tokenizer only, no image"]
        assert "note: torchvision unavailable" in cli("load", "acme/colqwen2-lora").stderr
    assert cli("load", "acme/colqwen2-lora", "--check").exit_code == 0


@pytest.mark.parametrize("layout,renamed", [("transformers4", 28), ("transformers5", 0)])
def test_both_published_key_layouts_register_and_equal_colpali_engine(reg, cli, tmp_path, colqwen2_layouts, layout,
                                                                      renamed):
    base, _ = add_base_and_adapter(reg, tmp_path, base=colqwen2_layouts["base"], adapter=colqwen2_layouts[layout],
                                   family="colqwen2", base_family="colqwen2", base_name="vidore/colqwen2-base",
                                   name="acme/colqwen2-lora")
    r = cli("register", "acme/colqwen2-lora", "--json")
    assert r.exit_code == 0, r.stderr
    assert r.json()["state"] == "registered" and r.json()["smoke"]["adapter_effect"] > 0
    landed = "every adapter tensor applied to a module of the pinned base: 30 of 30 found in the loaded model with " \
             "their saved values" + (f", {renamed} renamed by the library's key mapping" if renamed else "")
    assert landed in r.json()["smoke"]["checks"]
    assert f"base vidore/colqwen2-base@{base.commit} loaded as ColQwen2 with no missing or unexpected weights" \
        in r.json()["smoke"]["checks"]

    import torch

    import registry

    model, _tok = registry.load("acme/colqwen2-lora", device="cpu", registry=reg)
    batch = text_batch(colqwen2_layouts["base"], TEXTS)
    with torch.inference_mode():
        ours = model(**batch)
    assert max_abs_difference(ours, colpali_reference(colqwen2_layouts["base"], colqwen2_layouts[layout], batch)) \
        <= 1e-6


def test_colqwen2_adapter_with_foreign_key_names_is_refused(reg, cli, tmp_path, colqwen2_models):
    add_base_and_adapter(reg, tmp_path, base=colqwen2_models["base"], adapter=colqwen2_models["renamed"],
                         family="colqwen2", base_family="colqwen2", name="acme/colqwen2-lora")
    r = cli("register", "acme/colqwen2-lora")
    assert r.exit_code == 11
    assert "28 of 30 adapter tensors match no module of the base" in r.stderr and "text_model.layers" in r.stderr
    assert "adapter_config.json names './models/colqwen2-base'" in r.stderr
    shown = cli("show", "acme/colqwen2-lora", "--json").json()
    assert shown["summary"]["state"] == "quarantined"
    assert "the library would drop them silently" in shown["summary"]["state_reason"]


def test_adapter_file_lacking_a_tensor_is_quarantined(reg, cli, tmp_path, colqwen2_layouts):
    add_base_and_adapter(reg, tmp_path, base=colqwen2_layouts["base"], adapter=colqwen2_layouts["missing"],
                         family="colqwen2", base_family="colqwen2", name="acme/colqwen2-lora")
    r = cli("register", "acme/colqwen2-lora")
    assert r.exit_code == 11
    assert "adapter parameters were not in the adapter file and stay at their initial values" in r.stderr
    assert "custom_text_proj.lora_B.default.weight" in r.stderr
