"""Tiny ColQwen2 + LoRA (colpali's target regex) through colpali-engine: registered over its pinned
base; and an adapter whose keys match no module of the base refused (colpali #424)."""

from __future__ import annotations

import pytest

from registry.loaders.runtime import vision_available
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
    assert "every adapter tensor applied to a module of the pinned base" in smoke["checks"]
    if vision_available():  # the GPU machine: the processor path with the synthetic image
        assert "image_embeddings" in smoke["output_shapes"] and smoke["output_shapes"]["scores"] == [2, 1]
    else:  # CPU torch beside a CUDA torchvision: degraded, and said so
        assert smoke["notes"] == ["torchvision unavailable: smoke on text queries through the tokenizer only, no image"]
        assert "note: torchvision unavailable" in cli("load", "acme/colqwen2-lora").stderr
    assert cli("load", "acme/colqwen2-lora", "--check").exit_code == 0


def test_colqwen2_adapter_with_foreign_key_names_is_refused(reg, cli, tmp_path, colqwen2_models):
    add_base_and_adapter(reg, tmp_path, base=colqwen2_models["base"], adapter=colqwen2_models["renamed"],
                         family="colqwen2", base_family="colqwen2", name="acme/colqwen2-lora")
    r = cli("register", "acme/colqwen2-lora")
    assert r.exit_code == 11
    assert "adapter tensors match no module of the base" in r.stderr and "text_model.layers" in r.stderr
    assert "adapter_config.json names './models/colqwen2-base'" in r.stderr
