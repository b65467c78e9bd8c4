"""Loading and registering with the real libraries on CPU: all-MiniLM-L6-v2, a LoRA adapter over a
pinned tiny BERT, remote code; and the refusals of failure-modes.md, each with its message."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from registry.catalog.models import Model, SmokeRun
from tests.models_helpers import (SQLITE_ONLY, add_base_and_adapter, bert_models,  # noqa: F401,F811
                                  build_remote_code_model, remote_code_manifest)

pytestmark = [pytest.mark.ml, SQLITE_ONLY]
MINILM = "sentence-transformers/all-MiniLM-L6-v2"


def _state(reg, name: str) -> tuple[str, str | None]:
    with reg.catalog.reader() as s:
        m = s.scalars(select(Model).where(Model.name == name).order_by(Model.id.desc())).first()
        return m.state, m.state_reason


def test_minilm_registers_then_check_matches(reg, cli, minilm_dir):
    assert cli("add", minilm_dir, "--name", MINILM).exit_code == 0  # the curated manifest pins every digest
    r = cli("register", MINILM, "--json")
    assert r.exit_code == 0, r.stderr
    out = r.json()
    assert out["state"] == "registered"
    smoke = out["smoke"]
    assert smoke["device"] == "cpu" and smoke["dtype"] == "float32"
    assert smoke["output_shapes"] == {"embeddings": [2, 384]}
    assert len(smoke["fingerprint"]) == 64
    runs = cli("show", MINILM, "--json").json()["smoke_runs"]
    assert [(x["passed"], x["device"], x["fingerprint"]) for x in runs] == [(True, "cpu", smoke["fingerprint"])]
    with reg.catalog.reader() as s:
        run = s.scalars(select(SmokeRun)).one()
        assert {"torch", "transformers", "sentence-transformers"} <= set(run.library_versions)
        assert run.stats["inputs"] == "2 text(s)" and run.wall_ms > 0
    check = cli("load", MINILM, "--check", "--json")
    assert check.exit_code == 0, check.stderr
    assert check.json()["match"] == "identical" and check.json()["ok"] is True

    import registry

    model, tokenizer = registry.load(MINILM, device="cpu", registry=reg)
    assert not model.training and not any(p.requires_grad for p in model.parameters())
    assert tokenizer("hello")["input_ids"][0] == 101  # the real BERT vocabulary: [CLS]


def test_check_catches_a_node_whose_outputs_differ(reg, cli, minilm_dir):
    cli("add", minilm_dir, "--name", MINILM)
    assert cli("register", MINILM).exit_code == 0
    with reg.catalog.session() as s:  # as if recorded on a node whose files or libraries gave other numbers
        run = s.scalars(select(SmokeRun)).one()
        stats = dict(run.stats)
        emb = dict(stats["outputs"]["embeddings"])
        emb["sample"] = [v + 0.05 for v in emb["sample"]]
        stats["outputs"] = {"embeddings": emb}
        run.stats, run.fingerprint = stats, "0" * 64
    r = cli("load", MINILM, "--check")
    assert r.exit_code == 1
    assert "embeddings.sample: values differ beyond tolerance" in r.stdout
    assert "differ from the recorded run (cpu float32) beyond tolerance" in r.stderr
    j = cli("load", MINILM, "--check", "--json")  # one JSON document: the check result, not the error after it
    assert j.exit_code == 1
    doc = j.json()
    assert doc["ok"] is False and doc["problems"] and "error" not in doc


def test_register_in_bfloat16_records_the_dtype(reg, cli, minilm_dir):
    cli("add", minilm_dir, "--name", MINILM)
    r = cli("register", MINILM, "--dtype", "bfloat16", "--json")
    assert r.exit_code == 0, r.stderr
    assert r.json()["smoke"]["dtype"] == "bfloat16"
    check = cli("load", MINILM, "--check", "--dtype", "bfloat16", "--json")
    assert check.exit_code == 0 and check.json()["recorded_dtype"] == "bfloat16"


def test_adapter_is_applied_over_the_pinned_base(reg, cli, tmp_path, bert_models):
    base, adapter = add_base_and_adapter(reg, tmp_path, base=bert_models["base"], adapter=bert_models["adapter"],
                                         family="peft", base_family="transformers")
    r = cli("register", "acme/adapter", "--json")
    assert r.exit_code == 0, r.stderr
    smoke = r.json()["smoke"]
    assert smoke["adapter_effect"] > 0  # the adapted output differs from the base's
    assert f"base acme/base@{base.commit} loaded as BertModel with no missing or unexpected weights" in smoke["checks"]
    import registry

    model, _tok = registry.load("acme/adapter", registry=reg)
    # adapter_config.json names "somewhere/else": the pinned base was used, and is what the model records
    assert model.peft_config["default"].base_model_name_or_path == f"acme/base@{base.commit}"
    shown = cli("show", "acme/adapter", "--json").json()
    assert [(l["relation"], l["repo"], l["commit"], l["pinned"]) for l in shown["lineage"]] == [
        ("base", "acme/base", base.commit, True)]


def test_adapter_over_the_wrong_base_is_refused(reg, cli, tmp_path, bert_models):
    add_base_and_adapter(reg, tmp_path, base=bert_models["other_base"], adapter=bert_models["adapter"],
                         family="peft", base_family="transformers", base_name="acme/other")
    r = cli("register", "acme/adapter")
    assert r.exit_code == 11
    assert "adapter over the pinned base acme/other@" in r.stderr and "the adapter does not fit this base" in r.stderr
    assert "adapter_config.json names 'somewhere/else'" in r.stderr
    state, reason = _state(reg, "acme/adapter")
    assert state == "quarantined" and "does not fit this base" in reason
    assert cli("load", "acme/adapter").exit_code == 9  # quarantined: never loaded


def test_adapter_keys_that_match_no_module_are_refused(reg, cli, tmp_path, bert_models):
    add_base_and_adapter(reg, tmp_path, base=bert_models["base"], adapter=bert_models["renamed"], family="peft",
                         base_family="transformers")
    r = cli("register", "acme/adapter")
    assert r.exit_code == 11
    assert "adapter tensors match no module of the base" in r.stderr and "encoder.layers.0" in r.stderr


def test_adapter_without_effect_is_refused(reg, cli, tmp_path, bert_models):
    add_base_and_adapter(reg, tmp_path, base=bert_models["base"], adapter=bert_models["untrained"], family="peft",
                         base_family="transformers")
    r = cli("register", "acme/adapter")
    assert r.exit_code == 11 and "the adapter has no effect" in r.stderr


def test_device_cuda_without_a_gpu_is_a_clear_error(reg, cli, minilm_dir):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    cli("add", minilm_dir, "--name", MINILM)
    r = cli("register", MINILM, "--device", "cuda")
    assert r.exit_code == 2 and "no CUDA device is visible here" in r.stderr
    assert _state(reg, MINILM)[0] == "verified"  # nothing was tried: state unchanged
    assert cli("load", MINILM, "--device", "tpu").exit_code == 2


@pytest.mark.parametrize("variant,pin,code,message", [
    ("ok", True, 0, None),
    ("unpinned", False, 11, "refusing trust_remote_code: code not pinned by digest: code: configuration_tiny.py, "
                            "code: modeling_tiny.py"),
    ("dropout", True, 11, "two smoke runs on the same input gave different outputs: last_hidden_state"),
    ("train", True, 11, "modules still in training mode after eval() (dropout stays on): (root), embed, proj"),
])
def test_remote_code(reg, cli, tmp_path, variant, pin, code, message):
    kwargs = {"dropout": {"dropout_always": True}, "train": {"stay_in_train": True}}.get(variant, {})
    folder = build_remote_code_model(tmp_path / "rc", **kwargs)
    manifest = remote_code_manifest(tmp_path / "rc.toml", folder, "acme/rc", pin=pin)
    assert cli("add", folder, "--name", "acme/rc", "--manifest", manifest).exit_code == 0
    r = cli("register", "acme/rc")
    assert r.exit_code == code, r.stderr
    if message:
        assert message in r.stderr
        state, reason = _state(reg, "acme/rc")
        assert state == "quarantined" and message in reason
    else:
        assert "registered: smoke passed twice on" in r.stdout and "float32" in r.stdout


def test_inferred_remote_code_is_refused(reg, cli, tmp_path):
    folder = build_remote_code_model(tmp_path / "rc")
    assert cli("add", folder, "--name", "acme/rc-inferred").exit_code == 0  # inferred: code not pinned
    r = cli("register", "acme/rc-inferred")
    assert r.exit_code == 11 and "code not pinned by digest" in r.stderr


@pytest.mark.parametrize("text_repo,code,message", [
    ("acme/text-encoder", 11, "the text model folder 'acme--text-encoder' names none of bge-m3, bge-base-en-v1.5"),
    ("acme/bge-m3", 12, "Visualized BGE needs the visual_bge package"),
])
def test_visualized_bge_needs_the_text_models_name(reg, cli, tmp_path, text_repo, code, message):
    import importlib.util

    from tests.conftest import make_bert_like
    from tests.models_helpers import write_manifest

    if code == 12 and importlib.util.find_spec("visual_bge") is not None:
        pytest.skip("visual_bge is installed here")
    assert cli("add", make_bert_like(tmp_path / "text"), "--name", text_repo).exit_code == 0
    (tmp_path / "visual").mkdir()
    (tmp_path / "visual" / "Visualized_m3.pth").write_bytes(b"never unpickled by these checks")
    manifest = write_manifest(tmp_path / "v.toml", "acme/visualized", "visualized-bge", [
        {"role": "visual", "files": ["Visualized_m3.pth"]},
        {"role": "config", "repo": text_repo, "files": ["config.json"]},
        {"role": "tokenizer", "repo": text_repo, "files": ["vocab.txt", "tokenizer_config.json"]}])
    assert cli("add", tmp_path / "visual", "--name", "acme/visualized", "--manifest", manifest).exit_code == 0
    r = cli("register", "acme/visualized")
    assert r.exit_code == code and message in r.stderr
    assert _state(reg, "acme/visualized")[0] == ("quarantined" if code == 11 else "verified")
