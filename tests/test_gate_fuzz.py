"""Fuzzing the gate's JSON reader and family rules with hypothesis: whatever the bytes and file lists,
the answer is a manifest or a ManifestError (exit 2), never another exception, and a manifest never
requires a training leftover, another format's folder, or two weight formats."""

from __future__ import annotations

import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from registry.errors import ManifestError
from registry.manifest.infer import RepoView, infer_manifest
from registry.manifest.jsonread import MAX_INT_DIGITS, parse_json
from registry.paths import check_relative_path

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4),
    max_leaves=25,
)


@FUZZ
@given(st.binary(max_size=400))
def test_any_bytes_give_a_value_or_a_manifest_error(data):
    try:
        parse_json(data, "config.json", expect=None)
    except ManifestError as exc:
        assert exc.details["file"] == "config.json"


@FUZZ
@given(json_values)
def test_json_values_round_trip_unless_not_finite(value):
    text = json.dumps(value)  # writes Infinity/NaN for non-finite floats, as a careless writer would
    try:
        parsed = parse_json(text.encode(), "adapter_config.json", expect=None)
    except ManifestError as exc:
        assert any(w in exc.message for w in ("Infinity", "NaN", "digits", "overflows"))
        return
    assert json.dumps(parsed) == text


@FUZZ
@given(st.integers(min_value=1, max_value=6000))
def test_long_integers_are_refused_naming_the_key(digits):
    data = b'{"text_config": {"vocab_size": ' + b"9" * digits + b"}}"
    try:
        assert parse_json(data, "config.json")["text_config"]["vocab_size"] == int("9" * digits)
        assert digits <= MAX_INT_DIGITS
    except ManifestError as exc:
        assert digits > MAX_INT_DIGITS and exc.details["key"] == "text_config.vocab_size"


NAMES = ["config.json", "generation_config.json", "model.safetensors", "pytorch_model.bin",
         "model.safetensors.index.json", "pytorch_model.bin.index.json", "model-00001-of-00002.safetensors",
         "adapter_config.json", "adapter_model.safetensors", "adapter_model.bin", "modules.json",
         "1_Pooling/config.json", "2_Dense/model.safetensors", "2_Dense/pytorch_model.bin", "colbert_linear.pt",
         "sparse_linear.pt", "Visualized_m3.pth", "Visualized_base_en_v1.5.pth", "Visualized_x.pth",
         "tokenizer.json", "vocab.txt", "preprocessor_config.json", "modeling_x.py", "onnx/model.onnx",
         "checkpoint-10/adapter_model.safetensors", "optimizer.pt", "training_args.bin", "tf_model.h5"]
JSON_FILES = ["config.json", "adapter_config.json", "modules.json", "model.safetensors.index.json",
              "pytorch_model.bin.index.json"]
config_like = st.fixed_dictionaries({}, optional={
    "architectures": st.lists(st.sampled_from(["ColQwen2", "ColPali", "ColQwen2_5", "XLMRobertaModel", "BertModel"])
                              | st.text(max_size=8), max_size=2) | json_values,
    "model_type": st.sampled_from(["xlm-roberta", "bert", "qwen2_vl"]) | json_values,
    "max_position_embeddings": st.sampled_from([514, 8194]) | json_values,
    "auto_map": st.dictionaries(st.sampled_from(["AutoModel", "AutoConfig"]),
                                st.sampled_from(["modeling_x.M", "org/r--modeling_y.M", "../../x.M", "a"])
                                | json_values, max_size=2) | json_values,
    "base_model_name_or_path": st.sampled_from(["org/base", "./local", "", "org/x"]) | json_values,
    "auto_mapping": st.fixed_dictionaries({"base_model_class": st.sampled_from(["ColQwen2", "Other"])}) | json_values,
    "target_modules": st.sampled_from(["custom_text_proj", "q_proj"]) | json_values,
    "weight_map": st.dictionaries(st.text(max_size=6), st.sampled_from(["model-00001-of-00002.safetensors", "../x",
                                                                        "a/../b"]) | json_values, max_size=3)
                  | json_values,
})
jsonish = config_like | json_values | st.lists(st.fixed_dictionaries({"path": st.sampled_from(["", "1_Pooling",
                                                                                               "2_Dense", "/"])
                                                                                 | json_values}), max_size=3)


@FUZZ
@given(paths=st.sets(st.sampled_from(NAMES), max_size=12), contents=st.dictionaries(st.sampled_from(JSON_FILES),
       jsonish), base_paths=st.sets(st.sampled_from(NAMES), max_size=8),
       base_contents=st.dictionaries(st.sampled_from(JSON_FILES), jsonish), name=st.sampled_from(
           ["acme/x", "acme/colqwen2-x", "org/base", "acme/bge-m3-ft"]))
def test_rules_give_a_manifest_or_a_manifest_error(paths, contents, base_paths, base_contents, name):
    def lookup(repo, revision):
        return RepoView(repo, tuple(sorted(base_paths)), base_contents.get) if repo == "org/base" else None

    try:
        m = infer_manifest(name, sorted(paths), contents.get, lookup)
    except ManifestError as exc:
        assert exc.message and exc.exit_code == 2
        return
    assert m.inference is not None and m.inference.reason
    for c in m.components:
        for f in c.files:
            check_relative_path(f.path)
            if c.required and c.repo == name:
                assert not f.path.startswith(("onnx/", "checkpoint-")), f.path
                assert f.path not in ("optimizer.pt", "training_args.bin", "tf_model.h5")
    own_weights = [f.path for c in m.components if c.role == "weights" and c.repo == name for f in c.files]
    assert not ({"model.safetensors", "pytorch_model.bin"} <= set(own_weights))
