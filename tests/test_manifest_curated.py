"""The curated manifests under manifests/: all load, say what failure-modes.md says, and the real
all-MiniLM-L6-v2 folder is added under its curated manifest and comes out verified."""

from __future__ import annotations

from pathlib import Path

import pytest

from registry.config import Settings
from registry.manifest.schema import curated_manifest_path, load_manifest_file

MANIFESTS = Path(__file__).resolve().parent.parent / "manifests"
CURATED = sorted(MANIFESTS.rglob("*.toml"))
EXPECTED = {
    "vidore/colqwen2-v0.1", "vidore/colqwen2-base", "vidore/colqwen2-v0.1-merged", "vidore/colpali-v1.2",
    "vidore/colpaligemma-3b-pt-448-base", "BAAI/bge-m3", "BAAI/bge-visualized", "THUDM/cogvlm-chat-hf",
    "sentence-transformers/all-MiniLM-L6-v2",
}
MINILM = "sentence-transformers/all-MiniLM-L6-v2"


def manifest(name: str):
    return load_manifest_file(MANIFESTS / f"{name}.toml")


def files_of(m, role: str, repo: str | None = None) -> dict[str, object]:
    return {f.path: f for c in m.by_role(role) if repo in (None, c.repo) for f in c.files}


def test_the_settings_find_the_curated_manifests():
    assert Settings.from_env({"REGISTRY_HOME": "/tmp/x"}).manifests_dir.resolve() == MANIFESTS


@pytest.mark.parametrize("path", CURATED, ids=[p.relative_to(MANIFESTS).as_posix() for p in CURATED])
def test_every_curated_manifest_loads_under_its_own_name(path):
    m = load_manifest_file(path)
    assert f"{m.name}.toml" == path.relative_to(MANIFESTS).as_posix()
    assert curated_manifest_path(MANIFESTS, m.name) == path
    assert not m.inferred and m.smoke.texts
    # a revision, where one is given, is a full commit: anything else would not pin
    assert all(c.revision is None or c.pinned_commit for c in m.components)


def test_all_the_curated_models_are_there():
    assert {load_manifest_file(p).name for p in CURATED} == EXPECTED


def test_adapters_name_their_base():
    for name, base, family in [("vidore/colqwen2-v0.1", "vidore/colqwen2-base", "colqwen2"),
                               ("vidore/colpali-v1.2", "vidore/colpaligemma-3b-pt-448-base", "colpali")]:
        m = manifest(name)
        assert m.family == family
        assert set(files_of(m, "adapter")) == {"adapter_config.json", "adapter_model.safetensors"}
        [b] = m.by_role("base")
        assert b.repo == base and b.required
        assert {"model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors",
                "model.safetensors.index.json"} <= set(files_of(m, "base"))
        assert not any(p.startswith("checkpoint-") for c in m.components for p in (f.path for f in c.files))
    assert files_of(manifest("vidore/colpali-v1.2"), "adapter")["adapter_model.safetensors"].sha256 == (
        "caed65068cae6d50e572d984914324a7d8a9360cdd7f4263ea82f1792614391f")
    assert files_of(manifest("vidore/colqwen2-v0.1"), "adapter")["adapter_config.json"].size == 728
    assert files_of(manifest("vidore/colqwen2-v0.1-merged"), "weights")["model.safetensors"].sha256 == (
        "0981a5a7451093d64d57a9ae6346af6dedabc56ea4c29a1646cb8afda6ae3402")


def test_bge_m3_needs_both_heads_and_one_weight_format():
    m = manifest("BAAI/bge-m3")
    heads = files_of(m, "head")
    assert {p: f.sha256 for p, f in heads.items()} == {
        "colbert_linear.pt": "19bfbae397c2b7524158c919d0e9b19393c5639d098f0a66932c91ed8f5f9abb",
        "sparse_linear.pt": "45c93804d2142b8f6d7ec6914ae23a1eee9c6a1d27d83d908a20d2afb3595ad9"}
    assert all(c.required for c in m.by_role("head"))
    all_paths = {f.path for c in m.components for f in c.files}
    # the public tree holds the pickle and no safetensors: the pickle, pinned by its published sha256
    assert "pytorch_model.bin" in all_paths and "model.safetensors" not in all_paths
    assert files_of(m, "weights")["pytorch_model.bin"].sha256 == (
        "b5e0ce3470abf5ef3831aa1bd5553b486803e83251590ab7ff35a117cf6aad38")
    assert {c.revision for c in m.components} == {"520193ca9759c165dfb9b6bdb1edf8b43cff8455"}
    assert not any(p.startswith("onnx/") for p in all_paths)
    assert "sentencepiece.bpe.model" in files_of(m, "tokenizer")


def test_visualized_bge_takes_only_config_and_tokenizer_from_the_text_model():
    m = manifest("BAAI/bge-visualized")
    visual = files_of(m, "visual")["Visualized_m3.pth"]
    assert (visual.size, visual.sha256) == (1746155890, "d14e7e8f2618b80d3f4a3283c08f79a16f09ce37d4447dac24117b44df6bd069")
    text_files = {f.path for c in m.components if c.repo == "BAAI/bge-m3" for f in c.files}
    assert "config.json" in text_files and "sentencepiece.bpe.model" in text_files
    assert not any(p.endswith((".safetensors", ".bin")) for p in text_files)


def test_cogvlm_shards_code_and_vicuna_tokenizer():
    m = manifest("THUDM/cogvlm-chat-hf")
    assert m.family == "remote-code" and m.expected_missing_keys
    weights = files_of(m, "weights")
    assert {f"model-{i:05d}-of-00008.safetensors" for i in range(1, 9)} | {"model.safetensors.index.json"} == set(weights)
    required_code = {f.path for c in m.by_role("code") if c.required for f in c.files}
    assert required_code == {"configuration_cogvlm.py", "modeling_cogvlm.py", "visual.py"}
    [tok] = m.by_role("tokenizer")
    assert tok.repo == "lmsys/vicuna-7b-v1.5" and "tokenizer.model" in files_of(m, "tokenizer")


def test_minilm_pins_every_file_of_the_real_repo(minilm_dir):
    m = manifest(MINILM)
    pinned = {f.path: f for c in m.components for f in c.files}
    real = {p.relative_to(minilm_dir).as_posix() for p in minilm_dir.rglob("*") if p.is_file()}
    assert set(pinned) == real - {".gitattributes"}  # git metadata is not part of the model
    for path, spec in pinned.items():
        assert spec.size is not None and spec.sha256 is not None, path
        assert spec.size == (minilm_dir / path).stat().st_size


def test_minilm_added_under_its_curated_manifest_is_verified(cli, minilm_dir):
    r = cli("add", minilm_dir, "--name", MINILM, "--json")
    assert r.exit_code == 0, r.stderr
    added = r.json()
    assert added["state"] == "verified" and added["family"] == "sentence-transformers"
    assert added["inferred"] is False and added["manifest_source"].endswith("all-MiniLM-L6-v2.toml")
    assert added["files"] == 12 and added["pickles"] == []
    assert all(c["pinned"] for c in added["components"])
    shown = cli("show", MINILM, "--json").json()
    weights = [c for c in shown["components"] if c["role"] == "weights"][0]["files"][0]
    assert weights["sha256"] == "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
    assert weights["lfs"] is True and weights["size"] == 90868376
    assert cli("verify", "--deep").exit_code == 0
