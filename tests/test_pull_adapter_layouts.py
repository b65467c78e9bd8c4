"""``registry pull`` of a tiny ColQwen2 adapter in the published vidore key layout (transformers 4's
``model.layers.*``), served over HTTP by hubsim with its base: it registers, and its outputs equal
colpali-engine's own ``ColQwen2.from_pretrained(base)`` + ``PeftModel.from_pretrained(...)``. A broken one
(keys matching no module) ends quarantined with the reason."""

from __future__ import annotations

import pytest

from tests.adapter_layouts import (TEXTS, build_colqwen2_adapter, colpali_reference, copy_adapter,
                                   max_abs_difference, rewrite_keys, text_batch)
from tests.hubsim import HubSim
from tests.models_helpers import SQLITE_ONLY, colqwen2_models  # noqa: F401

pytestmark = [pytest.mark.ml, pytest.mark.colpali, SQLITE_ONLY]
BASE = "test-org/colqwen2-tiny-base"
ADAPTER = "test-org/colqwen2-tiny-v0.1"


@pytest.fixture
def served(tmp_path, colqwen2_models, monkeypatch):  # noqa: F811
    monkeypatch.setenv("REGISTRY_SMOKE", "1")  # pull ends with the smoke registration
    adapter = build_colqwen2_adapter(colqwen2_models["base"], tmp_path / "adapter", base_name=BASE,
                                     layout="transformers4")
    sim = HubSim()
    sim.add_repo(BASE, colqwen2_models["base"])
    sim.add_repo(ADAPTER, adapter)
    with sim:
        monkeypatch.setenv("HF_ENDPOINT", sim.url)
        yield sim, colqwen2_models["base"], adapter


def test_pull_of_the_published_layout_registers_and_equals_colpali_engine(cli, reg, served):
    import torch

    import registry

    sim, base_dir, adapter_dir = served
    r = cli("pull", ADAPTER, "--device", "cpu", "--json")
    assert r.exit_code == 0, r.stderr
    out = r.json()
    assert out["state"] == "registered" and out["family"] == "colqwen2"
    assert {(c["role"], c["repo"]) for c in out["components"]} >= {("adapter", ADAPTER), ("base", BASE)}
    checks = out["registration"]["smoke"]["checks"]
    assert ("every adapter tensor applied to a module of the pinned base: 30 of 30 found in the loaded model with "
            "their saved values, 28 renamed by the library's key mapping") in checks

    model, _tok = registry.load(ADAPTER, device="cpu", registry=reg)
    batch = text_batch(base_dir, TEXTS)
    with torch.inference_mode():
        ours = model(**batch)
    reference = colpali_reference(base_dir, adapter_dir, batch)
    assert max_abs_difference(ours, reference) <= 1e-6


def test_pull_of_an_adapter_whose_keys_match_nothing_is_quarantined(cli, served, tmp_path):
    sim, _base, adapter_dir = served
    broken = copy_adapter(adapter_dir, tmp_path / "broken")
    rewrite_keys(broken, "base_model.model.model.layers.", "base_model.model.decoder.blocks.")
    sim.add_repo("test-org/colqwen2-tiny-broken", broken)
    r = cli("pull", "test-org/colqwen2-tiny-broken", "--device", "cpu")
    assert r.exit_code == 11, r.stderr
    assert "quarantined" in r.stderr
    assert "28 of 30 adapter tensors match no module of the base, e.g. " \
           "base_model.model.decoder.blocks.0.mlp.down_proj.lora_A.weight" in r.stderr
    assert cli("show", "test-org/colqwen2-tiny-broken", "--json").json()["summary"]["state"] == "quarantined"
