"""Bad input to the gate (issue 8): garbled JSON, adapter chains and cycles, a base of the wrong
architecture, markers of two families. Each is refused through the real CLI with exit 2, a message
naming the file and the key, and nothing recorded in the catalog; pulls run against hubsim on 127.0.0.1."""

from __future__ import annotations

import json

import pytest

from tests.add_helpers import catalog_counts
from tests.conftest import make_bert_like, write_json, write_safetensors
from tests.hubsim import HubSim
from tests.pull_helpers import run_cli

DEEP = b'{"a": ' * 100_000 + b"1" + b"}" * 100_000
GARBLED = {
    "a JSON list": (b"[1, 2, 3]", None, "the top level is a list"),
    "nested 100 000 deep": (DEEP, "a.a.a.a", "nested more than 64 levels deep"),
    "a 5 000-digit integer": (b'{"hidden_size": ' + b"7" * 5000 + b"}", "hidden_size", "integer of 5000 digits"),
    "Infinity": (b'{"rope_scaling": {"factor": Infinity}}', "rope_scaling.factor", "Infinity"),
    "not UTF-8": (b'{"model_type": "bert\xff\xfe"}', None, "not UTF-8"),
}
FILES = ("config.json", "adapter_config.json", "model.safetensors.index.json")


def _garble(folder, file: str, data: bytes) -> None:
    if file == "adapter_config.json":
        write_safetensors(folder / "adapter_model.safetensors", {"lora_A.weight": ("F32", [2, 8])})
    if file == "model.safetensors.index.json":
        make_bert_like(folder, shards=2)
    (folder / file).write_bytes(data)


def _check_refusal(result, file: str, key: str | None, words: str) -> None:
    assert result.exit_code == 2, result.stderr
    error = json.loads(result.stdout)
    assert error["error"] == "ManifestError" and words in error["message"]
    assert error["details"]["file"].endswith(file)
    if key is not None:
        assert error["details"]["key"].startswith(key)
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("file", FILES)
@pytest.mark.parametrize("case", sorted(GARBLED))
def test_add_refuses_garbled_json(cli, reg, tmp_path, file, case):
    data, key, words = GARBLED[case]
    folder = make_bert_like(tmp_path / "m")
    _garble(folder, file, data)
    before = catalog_counts(reg)
    r = cli("add", folder, "--name", "acme/garbled", "--json")
    _check_refusal(r, file, key, words)
    assert catalog_counts(reg) == before  # nothing recorded


@pytest.mark.parametrize("file", FILES)
@pytest.mark.parametrize("case", sorted(GARBLED))
def test_pull_refuses_garbled_json(reg, tmp_path, file, case):
    data, key, words = GARBLED[case]
    folder = make_bert_like(tmp_path / "up")
    _garble(folder, file, data)
    sim = HubSim()
    sim.add_repo("test-org/garbled", folder)
    with sim:
        before = catalog_counts(reg)
        r = run_cli("pull", "test-org/garbled", "--endpoint", sim.url, "--json")
    _check_refusal(r, file, key, words)
    assert catalog_counts(reg) == before


def _adapter(folder, base: str):
    write_json(folder / "adapter_config.json", {"base_model_name_or_path": base, "peft_type": "LORA", "r": 2,
                                                "target_modules": ["query"]})
    write_safetensors(folder / "adapter_model.safetensors", {"lora_A.weight": ("F32", [2, 8])})
    return folder


def test_an_adapter_over_an_adapter_is_a_chain(reg, tmp_path):
    sim = HubSim()
    sim.add_repo("test-org/base", make_bert_like(tmp_path / "base"))
    sim.add_repo("test-org/inner", _adapter(tmp_path / "inner", "test-org/base"))
    sim.add_repo("test-org/outer", _adapter(tmp_path / "outer", "test-org/inner"))
    with sim:
        r = run_cli("pull", "test-org/outer", "--endpoint", sim.url, "--json")
    _check_refusal(r, "adapter_config.json", "base_model_name_or_path", "a chain")
    assert "test-org/outer -> test-org/inner -> test-org/base" in r.json()["message"]
    assert catalog_counts(reg)["models"] == 0


def test_two_adapters_naming_each_other_are_a_cycle(cli, reg, tmp_path):
    sim = HubSim()
    sim.add_repo("test-org/a", _adapter(tmp_path / "a", "test-org/b"))
    sim.add_repo("test-org/b", _adapter(tmp_path / "b", "test-org/a"))
    with sim:
        r = run_cli("pull", "test-org/a", "--endpoint", sim.url, "--json")
    _check_refusal(r, "adapter_config.json", "base_model_name_or_path", "a cycle")
    # an adapter naming itself, added from a folder
    r = cli("add", _adapter(tmp_path / "self", "acme/self"), "--name", "acme/self", "--json")
    _check_refusal(r, "adapter_config.json", "base_model_name_or_path", "a cycle")
    assert catalog_counts(reg)["models"] == 0


def test_a_base_of_another_architecture_is_refused(cli, reg, tmp_path):
    """The adapter adapts custom_text_proj (colpali-engine's head), the base in the catalog is a plain model."""
    base = make_bert_like(tmp_path / "base")
    assert cli("add", base, "--name", "acme/plain-base", "--json").exit_code == 0
    adapter = _adapter(tmp_path / "ad", "acme/plain-base")
    cfg = json.loads((adapter / "adapter_config.json").read_text())
    cfg["target_modules"] = "(.*(model).*(q_proj|v_proj).*$|.*(custom_text_proj).*$)"
    write_json(adapter / "adapter_config.json", cfg)
    before = catalog_counts(reg)
    r = cli("add", adapter, "--name", "acme/col-adapter", "--json")
    _check_refusal(r, "adapter_config.json", "target_modules", "trained on another architecture")
    # auto_mapping names the class the adapter was trained on
    cfg["target_modules"], cfg["auto_mapping"] = ["query"], {"base_model_class": "ColQwen2"}
    write_json(adapter / "adapter_config.json", cfg)
    r = cli("add", adapter, "--name", "acme/col-adapter", "--json")
    _check_refusal(r, "adapter_config.json", "auto_mapping.base_model_class", "trained on another architecture")
    assert catalog_counts(reg) == before


def test_markers_of_two_families_are_refused(cli, reg, tmp_path):
    folder = make_bert_like(tmp_path / "m")
    write_json(folder / "config.json", {"architectures": ["ColQwen2"], "model_type": "qwen2_vl"})
    (folder / "colbert_linear.pt").write_bytes(b"\0" * 64)
    r = cli("add", folder, "--name", "acme/two", "--json")
    assert r.exit_code == 2 and "markers of 2 families" in r.json()["message"]
    assert "colqwen2 (config.json architectures is ColQwen2)" in r.json()["message"]
    assert "bge-m3 (colbert_linear.pt present)" in r.json()["message"]
    assert catalog_counts(reg)["models"] == 0


def test_a_renamed_bge_m3_missing_a_head_is_incomplete(cli, reg, tmp_path):
    """A fine-tune under another name, with only sparse_linear.pt: both heads are required."""
    folder = make_bert_like(tmp_path / "m")
    (folder / "sparse_linear.pt").write_bytes(b"\0" * 64)
    r = cli("add", folder, "--name", "acme/my-retriever", "--json")
    assert r.exit_code == 4, r.stdout
    assert r.json()["details"]["missing"] == ["head: colbert_linear.pt"]
    assert catalog_counts(reg)["models"] == 0


def test_an_adapter_over_a_colqwen2_base_of_any_name_is_colqwen2(cli, reg, tmp_path):
    """The family comes from the base's config.json in the catalog, not from the repo names."""
    base = make_bert_like(tmp_path / "base")
    write_json(base / "config.json", {"architectures": ["ColQwen2"], "model_type": "qwen2_vl"})
    assert cli("add", base, "--name", "acme/retrieval-base", "--json").exit_code == 0
    r = cli("add", _adapter(tmp_path / "ad", "acme/retrieval-base"), "--name", "acme/finetune", "--json")
    assert r.exit_code == 0, r.stdout
    assert r.json()["family"] == "colqwen2"
    assert r.json()["family_rule"] == ("family colqwen2: adapter_config.json over acme/retrieval-base, whose "
                                       "config.json architectures is ColQwen2")
    shown = cli("show", "acme/finetune")
    assert "family colqwen2: adapter_config.json over acme/retrieval-base" in shown.stdout


def test_files_win_over_a_curated_manifest_chosen_by_name(cli, reg, tmp_path, monkeypatch):
    """A curated manifest says colqwen2; the folder carries bge-m3 heads: the files win, the disagreement is
    in the result and on stderr."""
    curated = tmp_path / "manifests" / "acme"
    curated.mkdir(parents=True)
    (curated / "thing.toml").write_text('name = "acme/thing"\nfamily = "colqwen2"\n[[component]]\n'
                                        'role = "weights"\nfiles = ["model.safetensors"]\n')
    monkeypatch.setenv("REGISTRY_MANIFESTS", str(tmp_path / "manifests"))
    folder = make_bert_like(tmp_path / "m")
    (folder / "colbert_linear.pt").write_bytes(b"\0" * 64)
    (folder / "sparse_linear.pt").write_bytes(b"\0" * 64)
    r = cli("add", folder, "--name", "acme/thing", "--json")
    assert r.exit_code == 0, r.stdout
    out = r.json()
    assert out["family"] == "bge-m3" and out["inferred"]
    assert "says family colqwen2, but the files say bge-m3" in out["disagreements"][0]
    assert "the files win" in r.stderr


def test_an_explicit_manifest_settles_two_families(cli, reg, tmp_path):
    """The refusal says to pass --manifest; with it the add goes through, and the note stays on record."""
    folder = make_bert_like(tmp_path / "m")
    write_json(folder / "config.json", {"architectures": ["ColQwen2"], "model_type": "qwen2_vl"})
    (folder / "colbert_linear.pt").write_bytes(b"\0" * 64)
    manifest = tmp_path / "two.toml"
    manifest.write_text('name = "acme/two"\nfamily = "transformers"\n[[component]]\nrole = "weights"\n'
                        'files = ["model.safetensors"]\n[[component]]\nrole = "config"\nfiles = ["config.json"]\n')
    r = cli("add", folder, "--name", "acme/two", "--manifest", manifest, "--json")
    assert r.exit_code == 0, r.stdout
    assert r.json()["family"] == "transformers"
    assert "markers of 2 families" in r.json()["disagreements"][0]
