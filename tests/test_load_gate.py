"""The load gate, before any torch: incomplete, changed, quarantined and malformed models are refused
with each ``role: file`` named. Runs on SQLite and Postgres, without the ML extras."""

from __future__ import annotations

import json
import os
import sys
from dataclasses import replace

import pytest
from sqlalchemy import select

from registry.catalog.models import Model
from registry.errors import ConflictError, FormatError, IncompleteModel
from registry.services.add import add_folder
from registry.services.load import gate
from tests.conftest import make_bert_like
from tests.models_helpers import write_manifest


def _drop_blob(reg, sha256: str) -> None:
    path = reg.store.path_for(sha256)
    os.chmod(path, 0o644)
    path.unlink()


def test_missing_shard_is_named_and_torch_is_not_imported(reg, cli, tmp_path):
    added = add_folder(reg, make_bert_like(tmp_path / "m", shards=2), "acme/sharded")
    from registry.services.listing import show_model

    detail = show_model(reg, "acme/sharded")
    shard = next(f for c in detail.components for f in c.files if f.path == "model-00002-of-00002.safetensors")
    _drop_blob(reg, shard.sha256)
    had_torch = "torch" in sys.modules
    with pytest.raises(IncompleteModel) as err:
        gate(reg, "acme/sharded")
    assert err.value.missing == ["weights: model-00002-of-00002.safetensors (not in the store)"]
    assert "cannot be loaded" in err.value.message and added.commit[:12] in err.value.message
    assert ("torch" in sys.modules) == had_torch  # the gate refuses before touching torch
    r = cli("load", "acme/sharded")
    assert r.exit_code == 4
    assert "weights: model-00002-of-00002.safetensors" in r.stderr
    r = cli("register", "acme/sharded", "--json")
    assert r.exit_code == 4 and r.json()["details"]["missing"] == err.value.missing


def _quarantine(reg, name: str, reason: str) -> None:
    with reg.catalog.session() as s:
        model = s.scalars(select(Model).where(Model.name == name)).one()
        model.state, model.state_reason = "quarantined", reason


def test_quarantined_model_is_refused_and_the_message_says_how_to_lift_it(reg, cli, tmp_path):
    add_folder(reg, make_bert_like(tmp_path / "m"), "acme/q")
    _quarantine(reg, "acme/q", "verify: bytes changed")
    with pytest.raises(ConflictError, match=r"quarantined \(verify: bytes changed\); quarantined models are never loaded"):
        gate(reg, "acme/q")
    r = cli("load", "acme/q")
    assert r.exit_code == 9 and "pull or add acme/q again" in r.stderr
    for args in (("deploy", "acme/q", "--target", tmp_path / "d"), ("export", "acme/q", "-o", tmp_path / "x")):
        assert cli(*args).exit_code == 9
    _quarantine(reg, "acme/q", "smoke: outputs differ between runs")
    r = cli("load", "acme/q")
    assert r.exit_code == 9 and "then run `registry register acme/q`" in r.stderr
    # registration may run again (a pass lifts it); without the smoke nothing changes
    r = cli("register", "acme/q", "--no-smoke")
    assert r.exit_code == 0 and "left quarantined" in r.stdout
    _quarantine(reg, "acme/q", "merge proof: merged output differs")
    r = cli("register", "acme/q")  # only a passing merge proof lifts this one
    assert r.exit_code == 9 and "registry merge ADAPTER --name acme/q" in r.stderr


def test_bge_m3_without_one_head_is_refused(reg, cli, tmp_path):
    folder = make_bert_like(tmp_path / "bge")
    (folder / "colbert_linear.pt").write_bytes(b"not read by the gate")
    manifest = write_manifest(tmp_path / "m.toml", "acme/bge-m3-onehead", "bge-m3", [
        {"role": "weights", "files": ["model.safetensors"]}, {"role": "config", "files": ["config.json"]},
        {"role": "head", "files": ["colbert_linear.pt"]}, {"role": "tokenizer", "files": ["vocab.txt"]}])
    # ingest asks what the gate asks: a --manifest the family's rule refuses records nothing
    r = cli("add", folder, "--name", "acme/bge-m3-onehead", "--manifest", manifest, "--json")
    assert r.exit_code == 4 and r.json()["details"]["missing"] == ["head: sparse_linear.pt"]
    assert cli("show", "acme/bge-m3-onehead").exit_code == 3
    # a record holding one head (written by an older registry) is refused by the gate
    (folder / "sparse_linear.pt").write_bytes(b"not read by the gate either")
    with_both = write_manifest(tmp_path / "m2.toml", "acme/bge-m3-onehead", "bge-m3", [
        {"role": "weights", "files": ["model.safetensors"]}, {"role": "config", "files": ["config.json"]},
        {"role": "head", "files": ["colbert_linear.pt", "sparse_linear.pt"]}, {"role": "tokenizer", "files": ["vocab.txt"]}])
    add_folder(reg, folder, "acme/bge-m3-onehead", manifest_file=with_both)
    with reg.catalog.session() as s:
        model = s.scalars(select(Model).where(Model.name == "acme/bge-m3-onehead")).one()
        manifest_data = json.loads(json.dumps(model.manifest))
        head = next(c for c in manifest_data["components"] if c["role"] == "head")
        head["files"] = [f for f in head["files"] if f["path"] != "sparse_linear.pt"]
        model.manifest = manifest_data
    with pytest.raises(IncompleteModel) as err:
        gate(reg, "acme/bge-m3-onehead")
    assert err.value.missing == ["head: sparse_linear.pt"]
    r = cli("register", "acme/bge-m3-onehead")
    assert r.exit_code == 4 and "head: sparse_linear.pt" in r.stderr


def test_base_registered_under_the_adapters_name_is_refused(reg, cli, tmp_path, monkeypatch):
    curated = tmp_path / "manifests"
    write_manifest(curated / "acme" / "lora.toml", "acme/lora", "peft", [
        {"role": "adapter", "files": ["adapter_config.json", "adapter_model.safetensors"]},
        {"role": "base", "repo": "acme/base", "patterns": ["config.json", "model*.safetensors"]}])
    base = make_bert_like(tmp_path / "base")
    # Recorded before the curated manifest existed: it looked like a plain transformers model.
    add_folder(reg, base, "acme/lora")
    monkeypatch.setenv("REGISTRY_MANIFESTS", str(curated))
    curated_reg = replace(reg, settings=replace(reg.settings, manifests_dir=curated))
    with pytest.raises(IncompleteModel) as err:
        gate(curated_reg, "acme/lora")
    assert [m.split(" (")[0] for m in err.value.missing] == ["adapter:", "base:"]
    r = cli("load", "acme/lora")
    assert r.exit_code == 4 and "adapter: (no adapter component" in r.stderr
    # And adding the base under the adapter's name now is refused by add itself.
    r = cli("add", base, "--name", "acme/lora", "--revision", "v2")
    assert r.exit_code == 4 and "adapter: adapter_config.json" in r.stderr


def test_bin_beside_safetensors_index_is_refused(reg, cli, tmp_path):
    folder = make_bert_like(tmp_path / "m", shards=2)
    (folder / "pytorch_model.bin").write_bytes(b"stray pickle")
    # not selected, so not part of the model (tests/test_ingest_paths.py has the rule for add and pull)
    r = cli("add", folder, "--name", "acme/stray", "--json")
    assert r.exit_code == 0 and r.json()["ignored"] == ["pytorch_model.bin"]
    # A record that holds both (written by an older registry or another tool) is refused at load.
    stray = tmp_path / "pytorch_model.bin"
    stray.write_bytes(b"stray pickle")
    blob = reg.store.ingest_file(stray).digests
    with reg.catalog.session() as s:
        model = s.scalars(select(Model).where(Model.name == "acme/stray")).one()
        manifest = json.loads(json.dumps(model.manifest))
        weights = next(c for c in manifest["components"] if c["role"] == "weights")
        weights["files"].append({"path": "pytorch_model.bin", "size": blob.size, "sha256": blob.sha256,
                                 "blake3": blob.blake3, "git_oid": blob.git_sha1, "lfs": False})
        model.manifest = manifest
    with pytest.raises(FormatError, match="pytorch_model.bin sits beside model.safetensors.index.json"):
        gate(reg, "acme/stray")
    assert cli("load", "acme/stray").exit_code == 5


def test_changed_blob_is_refused(reg, cli, tmp_path):
    add_folder(reg, make_bert_like(tmp_path / "m"), "acme/changed")
    from registry.services.listing import show_model

    weights = next(f for c in show_model(reg, "acme/changed").components for f in c.files if f.path == "model.safetensors")
    path = reg.store.path_for(weights.sha256)
    os.chmod(path, 0o644)
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF  # same size, different bytes
    path.write_bytes(bytes(data))
    os.utime(path, ns=(1, 1))  # a new mtime: the stat cache must not vouch for it
    r = cli("load", "acme/changed")
    assert r.exit_code == 5 and "weights: model.safetensors: blake3 is" in r.stderr and "registry verify" in r.stderr


def test_no_smoke_leaves_verified_and_says_so(reg, cli, tmp_path):
    add_folder(reg, make_bert_like(tmp_path / "m"), "acme/nosmoke")
    r = cli("register", "acme/nosmoke", "--no-smoke", "--json")
    assert r.exit_code == 0, r.stderr
    out = r.json()
    assert out["state"] == "verified" and out["smoke"] is None
    assert "--no-smoke given, no smoke inference ran" in out["message"] and "not registered" in out["message"]
    assert cli("show", "acme/nosmoke", "--json").json()["summary"]["state"] == "verified"


def test_unknown_model_and_bad_options(cli, tmp_path):
    assert cli("load", "acme/nothing").exit_code == 3
    assert cli("register", "acme/nothing").exit_code == 3
    r = cli("merge", "acme/nothing", "--name", "not a name")
    assert r.exit_code == 2 and "is not a repo id" in r.stderr


def test_materialized_folder_links_into_the_store(reg, tmp_path):
    add_folder(reg, make_bert_like(tmp_path / "m", shards=2), "acme/bge-m3-text")
    gated = gate(reg, "acme/bge-m3-text")
    folder = gated.folders["acme/bge-m3-text"]
    assert folder.name == "acme--bge-m3-text"  # Visualized BGE picks its architecture from this name
    files = sorted(p.name for p in folder.iterdir())
    assert files == ["config.json", "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors",
                     "model.safetensors.index.json", "tokenizer_config.json", "vocab.txt"]
    for p in folder.iterdir():
        assert p.is_symlink() and p.resolve().is_relative_to(reg.store.root)  # links, no copies
    assert gate(reg, "acme/bge-m3-text").folders == gated.folders  # reused, not rebuilt
    # a broken folder (a link removed) is rebuilt
    (folder / "vocab.txt").unlink()
    assert (gate(reg, "acme/bge-m3-text").folders["acme/bge-m3-text"] / "vocab.txt").is_symlink()


def test_remote_code_needs_digest_pins_not_only_a_commit_pin():
    from registry.loaders.remote_code import unpinned_code
    from registry.manifest.resolve import LockedComponent, LockedFile, ResolvedManifest

    code = LockedFile("modeling_x.py", 10, "a" * 64, "b" * 64, "c" * 40, False)

    def resolved(**pins):
        comp = LockedComponent("code", "acme/x", "d" * 40, True, files=(code,), **pins)
        return ResolvedManifest("acme/x", "remote-code", False, "manifests/acme/x.toml", (comp,))

    assert unpinned_code(resolved(pinned=True)) == ["code: modeling_x.py"]  # commit-pinned only
    assert unpinned_code(resolved(pinned=True, digest_pinned=True)) == []
    roundtrip = ResolvedManifest.from_dict(resolved(pinned=True, digest_pinned=True).to_dict())
    assert roundtrip.components[0].digest_pinned is True
