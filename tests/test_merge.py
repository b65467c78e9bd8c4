"""``registry merge``: the whole merged model (safetensors + processor files), lineage to the adapter and
base revisions, merged output == adapter+base output, then registered."""

from __future__ import annotations

import pytest

from tests.models_helpers import (SQLITE_ONLY, add_base_and_adapter, bert_models,  # noqa: F401,F811
                                  colqwen2_models)

pytestmark = [pytest.mark.ml, SQLITE_ONLY]


@pytest.mark.colpali
def test_merge_colqwen2_adapter(reg, cli, tmp_path, colqwen2_models):
    base, adapter = add_base_and_adapter(reg, tmp_path, base=colqwen2_models["base"],
                                         adapter=colqwen2_models["adapter"], family="colqwen2",
                                         base_family="colqwen2", name="acme/colqwen2-lora")
    r = cli("merge", "acme/colqwen2-lora", "--name", "acme/colqwen2-merged", "--json")
    assert r.exit_code == 0, r.stderr
    out = r.json()
    assert out["state"] == "registered" and out["max_difference"] <= out["tolerance"]
    shown = cli("show", "acme/colqwen2-merged", "--json").json()
    assert shown["summary"]["family"] == "colqwen2"
    files = sorted(f["path"] for c in shown["components"] for f in c["files"])
    assert files == ["config.json", "model.safetensors", "preprocessor_config.json", "tokenizer.json",
                     "tokenizer_config.json"]  # the whole model, not adapter_* files
    assert sorted((l["relation"], l["repo"], l["commit"]) for l in shown["lineage"]) == [
        ("merged_from", "acme/base", base.commit), ("merged_from", "acme/colqwen2-lora", adapter.commit)]
    assert shown["smoke_runs"][-1]["passed"] is True
    r = cli("merge", "acme/colqwen2-lora", "--name", "acme/colqwen2-merged")
    assert r.exit_code == 9 and "already exists" in r.stderr


def test_merge_peft_adapter_and_refusals(reg, cli, tmp_path, bert_models):
    add_base_and_adapter(reg, tmp_path, base=bert_models["base"], adapter=bert_models["adapter"], family="peft",
                         base_family="transformers")
    r = cli("merge", "acme/adapter", "--name", "acme/merged", "--json")
    assert r.exit_code == 0, r.stderr
    assert r.json()["state"] == "registered"
    assert cli("show", "acme/merged", "--json").json()["summary"]["family"] == "transformers"
    r = cli("merge", "acme/base", "--name", "acme/merged-base")
    assert r.exit_code == 2 and "is not a LoRA adapter model" in r.stderr
    assert cli("show", "acme/merged-base").exit_code == 3  # nothing recorded
