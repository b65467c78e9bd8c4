"""Inference for repos without a curated manifest: each rule, and what is never required."""

from __future__ import annotations

from typing import Any

import pytest

from registry.errors import ManifestError
from registry.manifest.infer import RepoView, infer_manifest, is_ignored


def infer(files: dict[str, Any], name: str = "acme/x", bases: dict[str, dict[str, Any]] | None = None):
    """``files`` maps path -> parsed JSON (for the JSON files inference reads) or None; ``bases`` maps a
    base repo id to its files, as the catalog or the endpoint would show it."""
    def lookup(repo: str, revision: str | None) -> RepoView | None:
        base = (bases or {}).get(repo)
        return None if base is None else RepoView(repo, tuple(base), lambda p: base.get(p))

    return infer_manifest(name, list(files), lambda p: files.get(p), lookup)


def roles(m) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for c in m.components:
        out.setdefault(c.role, []).extend([f.path for f in c.files] + list(c.patterns))
    return out


def test_inferred_manifests_are_marked():
    m = infer({"config.json": {}, "model.safetensors": None})
    assert m.inferred and m.source == "inferred" and m.family == "transformers"
    assert roles(m) == {"weights": ["model.safetensors"], "config": ["config.json"]}
    assert all(c.repo == "acme/x" and c.required for c in m.components)


COLQWEN2_BASE = {"config.json": {"architectures": ["ColQwen2"], "model_type": "qwen2_vl"},
                 "model.safetensors.index.json": {"weight_map": {"a": "model-00001-of-00002.safetensors",
                                                                 "b": "model-00002-of-00002.safetensors"}},
                 "model-00001-of-00002.safetensors": None, "model-00002-of-00002.safetensors": None}


def test_adapter_means_adapter_plus_base_from_base_model_name_or_path():
    m = infer({"adapter_config.json": {"base_model_name_or_path": "vidore/colqwen2-base"},
               "adapter_model.safetensors": None, "tokenizer.json": None, "preprocessor_config.json": None,
               "checkpoint-3694/optimizer.pt": None, "checkpoint-3694/adapter_model.safetensors": None},
              bases={"vidore/colqwen2-base": COLQWEN2_BASE})
    assert m.family == "colqwen2"
    assert m.inference.rule == "adapter-base-architecture"
    assert "config.json architectures is ColQwen2" in m.inference.reason
    r = roles(m)
    assert r["adapter"] == ["adapter_config.json", "adapter_model.safetensors"]
    [base] = m.by_role("base")
    assert base.repo == "vidore/colqwen2-base" and base.required and not base.pinned_commit
    # the base's listing is known: exactly its config and every shard its index names
    assert [f.path for f in base.files] == ["config.json", "model.safetensors.index.json",
                                            "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"]
    assert r["tokenizer"] == ["tokenizer.json"] and r["processor"] == ["preprocessor_config.json"]
    assert m.smoke.image is not None  # a processor means the smoke test feeds an image
    assert not any(p.startswith("checkpoint-") for ps in r.values() for p in ps)


def test_adapter_family_follows_the_base_config_never_its_name():
    m = infer({"adapter_config.json": {"base_model_name_or_path": "google/gemma-2b"}, "adapter_model.bin": None})
    assert m.family == "peft" and roles(m)["adapter"] == ["adapter_config.json", "adapter_model.bin"]
    # a base named like anything at all, whose config says ColQwen2 / ColPali
    assert infer({"adapter_config.json": {"base_model_name_or_path": "acme/my-base"},
                  "adapter_model.safetensors": None}, bases={"acme/my-base": COLQWEN2_BASE}).family == "colqwen2"
    pali = {"config.json": {"architectures": ["ColPali"]}, "model.safetensors": None}
    assert infer({"adapter_config.json": {"base_model_name_or_path": "acme/b"}, "adapter_model.safetensors": None},
                 bases={"acme/b": pali}).family == "colpali"
    # a name that says colqwen2 over a plain base: the files win, and the disagreement is reported
    plain = {"config.json": {"architectures": ["Qwen2ForCausalLM"]}, "model.safetensors": None}
    m = infer({"adapter_config.json": {"base_model_name_or_path": "vidore/colqwen2-base"},
               "adapter_model.safetensors": None}, name="acme/colqwen2-ft", bases={"vidore/colqwen2-base": plain})
    assert m.family == "peft"
    assert m.inference.disagreements and "suggests family colqwen2" in m.inference.disagreements[0]


@pytest.mark.parametrize("cfg, words", [
    ({}, "no base_model_name_or_path"),
    ({"base_model_name_or_path": "/home/me/models/base"}, "a local path"),
    ({"base_model_name_or_path": "./models/colpaligemma"}, "a local path"),
])
def test_adapter_without_a_usable_base_is_refused(cfg, words):
    with pytest.raises(ManifestError, match=words) as info:
        infer({"adapter_config.json": cfg, "adapter_model.safetensors": None})
    assert info.value.details == {"file": "adapter_config.json", "key": "base_model_name_or_path"}


def test_index_means_every_shard_it_names():
    index = {"weight_map": {"a": "model-00001-of-00003.safetensors", "b": "model-00002-of-00003.safetensors",
                            "c": "model-00003-of-00003.safetensors", "d": "model-00001-of-00003.safetensors"}}
    m = infer({"config.json": {}, "model.safetensors.index.json": index,
               "model-00001-of-00003.safetensors": None, "pytorch_model.bin": None, "onnx/model.onnx": None})
    # every named shard is required, even the two that are absent: that is what makes a partial copy visible
    assert roles(m)["weights"] == ["model.safetensors.index.json", "model-00001-of-00003.safetensors",
                                   "model-00002-of-00003.safetensors", "model-00003-of-00003.safetensors"]


def test_index_without_a_weight_map_is_refused():
    with pytest.raises(ManifestError, match="weight_map: missing or empty") as info:
        infer({"model.safetensors.index.json": {"metadata": {}}, "config.json": {}})
    assert info.value.details["key"] == "weight_map"


def test_one_weight_format_only():
    m = infer({"config.json": {}, "model.safetensors": None, "pytorch_model.bin": None, "tf_model.h5": None,
               "onnx/model.onnx": None, "flax_model.msgpack": None})
    assert roles(m)["weights"] == ["model.safetensors"]
    m = infer({"config.json": {}, "pytorch_model.bin": None})
    assert roles(m)["weights"] == ["pytorch_model.bin"] and "pickle" in m.by_role("weights")[0].note


def test_modules_json_means_the_module_folders():
    modules = [{"idx": 0, "path": "", "type": "sentence_transformers.models.Transformer"},
               {"idx": 1, "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
               {"idx": 2, "path": "2_Dense", "type": "sentence_transformers.models.Dense"}]
    m = infer({"config.json": {}, "model.safetensors": None, "modules.json": modules, "sentence_bert_config.json": None,
               "1_Pooling/config.json": None, "2_Dense/config.json": None, "2_Dense/model.safetensors": None,
               "3_Unused/config.json": None, "vocab.txt": None})
    assert m.family == "sentence-transformers"
    st = [c for c in m.components if c.note == "sentence-transformers modules"][0]
    assert [f.path for f in st.files] == ["1_Pooling/config.json", "2_Dense/config.json", "2_Dense/model.safetensors",
                                          "modules.json", "sentence_bert_config.json"]
    with pytest.raises(ManifestError, match="modules.json: the top level is a dict, not a list"):
        infer({"modules.json": {"0": "x"}, "config.json": {}})


def test_bge_m3_heads_and_one_head_brings_both():
    m = infer({"config.json": {}, "model.safetensors": None, "colbert_linear.pt": None, "sparse_linear.pt": None,
               "sentencepiece.bpe.model": None, "onnx/model.onnx": None, "pytorch_model.bin": None})
    assert m.family == "bge-m3"
    assert roles(m)["head"] == ["colbert_linear.pt", "sparse_linear.pt"]
    assert roles(m)["tokenizer"] == ["sentencepiece.bpe.model"]
    for head in ("colbert_linear.pt", "sparse_linear.pt"):
        one = infer({"config.json": {}, "model.safetensors": None, head: None}, name="acme/renamed-finetune")
        assert one.family == "bge-m3" and one.inference.reason == f"{head} present"
        assert roles(one)["head"] == ["colbert_linear.pt", "sparse_linear.pt"]  # the missing one is required


BGE_M3_CONFIG = {"architectures": ["XLMRobertaModel"], "model_type": "xlm-roberta", "max_position_embeddings": 8194,
                 "hidden_size": 1024}


def test_a_bge_m3_encoder_without_heads_needs_both_heads():
    m = infer({"config.json": BGE_M3_CONFIG, "model.safetensors": None, "modules.json": [{"path": ""}]})
    assert m.family == "bge-m3" and m.inference.rule == "bge-m3-config"
    assert roles(m)["head"] == ["colbert_linear.pt", "sparse_linear.pt"]
    # a reranker built on the same encoder is another architecture: no heads
    reranker = dict(BGE_M3_CONFIG, architectures=["XLMRobertaForSequenceClassification"])
    assert infer({"config.json": reranker, "model.safetensors": None}).family == "transformers"
    # XLM-R of the usual length is not bge-m3
    assert infer({"config.json": dict(BGE_M3_CONFIG, max_position_embeddings=514),
                  "model.safetensors": None}).family == "transformers"


def test_auto_map_means_code_files():
    cfg = {"auto_map": {"AutoConfig": "configuration_cogvlm.CogVLMConfig",
                        "AutoModelForCausalLM": "modeling_cogvlm.CogVLMForCausalLM",
                        "AutoTokenizer": ["tokenization_x.XTokenizer", None],
                        "AutoModel": "other/repo--modeling_other.Model"}}
    m = infer({"config.json": cfg, "model.safetensors": None, "configuration_cogvlm.py": None,
               "modeling_cogvlm.py": None, "visual.py": None, "util.py": None})
    assert m.family == "remote-code"
    own, other = m.by_role("code")
    assert [f.path for f in own.files] == ["configuration_cogvlm.py", "modeling_cogvlm.py", "tokenization_x.py",
                                           "util.py", "visual.py"]
    # auto_map's "org/repo--module.Class" runs code from another repo: that repo's file is required too
    assert other.repo == "other/repo" and [f.path for f in other.files] == ["modeling_other.py"]
    assert m.expected_missing_keys == (r".*rotary_emb\.inv_freq$",)


def test_a_code_repo_brings_its_relative_imports_where_its_listing_is_visible():
    # jina-embeddings-v3: auto_map names modeling_lora in jinaai/xlm-roberta-flash-implementation; transformers
    # also fetches what it imports from that repo (.modeling_xlm_roberta, .block, ...), files the listing shows
    cfg = {"auto_map": {"AutoConfig": "org/impl--configuration_x.XConfig", "AutoModel": "org/impl--modeling_lora.XLoRA"}}
    files = {"config.json": cfg, "model.safetensors": None}
    impl = {"configuration_x.py": None, "modeling_lora.py": None, "modeling_x.py": None, "block.py": None,
            "README.md": None}
    (code,) = infer(files).by_role("code")
    assert code.repo == "org/impl" and [f.path for f in code.files] == ["configuration_x.py", "modeling_lora.py"]
    (code,) = infer(files, bases={"org/impl": impl}).by_role("code")
    assert [f.path for f in code.files] == ["block.py", "configuration_x.py", "modeling_lora.py", "modeling_x.py"]


def test_legacy_sentence_transformers_module_configs_are_read():
    # sentence-transformers reads sentence_xlm-roberta_config.json (and the other legacy names) when a repo
    # has no sentence_bert_config.json, as intfloat/multilingual-e5-large-instruct does
    modules = [{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"}]
    m = infer({"config.json": {}, "model.safetensors": None, "modules.json": modules,
               "sentence_xlm-roberta_config.json": {"max_seq_length": 512}})
    assert "sentence_xlm-roberta_config.json" in [f.path for c in m.components for f in c.files]


def test_not_a_model_folder():
    with pytest.raises(ManifestError, match="is this a model folder"):
        infer({"README.md": None, "notes.txt": None})


@pytest.mark.parametrize("path, ignored", [
    ("checkpoint-3694/optimizer.pt", True), ("checkpoint-1/adapter_model.safetensors", True),
    ("onnx/model.onnx", True), ("optimizer.pt", True), ("rng_state.pth", True), ("openvino/x.xml", True),
    ("model.safetensors", False), ("1_Pooling/config.json", False), ("checkpoints.md", False),
])
def test_never_required(path, ignored):
    assert is_ignored(path) is ignored
