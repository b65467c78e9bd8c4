"""`add` and `pull` are one ingest pipeline: the same fixtures through both paths give the same outcome.

Each test runs twice per database: ``add`` of a local folder, and ``pull`` of the same folder served by
hubsim (a real HTTP server on 127.0.0.1) through the real huggingface_hub client.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select, update

from registry.catalog.models import Model
from registry.hashing import hash_file
from tests.add_helpers import catalog_counts, wait_for_ctime_tick
from tests.conftest import CliResult, make_bert_like, write_safetensors
from tests.hubsim import HubSim
from tests.models_helpers import write_manifest
from tests.pull_helpers import events, make_adapter, make_bge_m3

pytestmark = pytest.mark.hubclient


class Ingest:
    """``ingest(name, folder, *args)``: ``registry add FOLDER --name NAME`` or, for pull, serve FOLDER as NAME
    on hubsim (a new commit when its bytes changed) and ``registry pull NAME``."""

    def __init__(self, kind: str, cli, hub: HubSim | None) -> None:
        self.kind, self.cli, self.hub = kind, cli, hub

    def __call__(self, name: str, folder: Path, *args: object) -> CliResult:
        if self.kind == "add":
            return self.cli("add", folder, "--name", name, *args, "--json")
        assert self.hub is not None
        self.hub.add_repo(name, folder)
        return self.cli("pull", name, "--endpoint", self.hub.url, *args, "--json")


@pytest.fixture(params=["add", "pull"])
def ingest(request, cli) -> Iterator[Ingest]:
    if request.param == "add":
        yield Ingest("add", cli, None)
        return
    with HubSim() as sim:
        yield Ingest("pull", cli, sim)


def _state(reg, name: str) -> tuple[str, str | None]:
    with reg.catalog.reader() as s:
        m = s.scalars(select(Model).where(Model.name == name).order_by(Model.id.desc())).first()
        return m.state, m.state_reason


def _recorded_paths(cli, name: str) -> set[str]:
    return {f["path"] for c in cli("show", name, "--json").json()["components"] for f in c["files"]}


def _refused(reg, ingest: Ingest, name: str) -> list[dict]:
    return events(reg, f"{ingest.kind}.refused")


# ---- one rule for each case ------------------------------------------------------------------------

def test_a_stray_bin_beside_an_index_is_left_out_and_named(ingest, cli, reg, tmp_path):
    """The model is what its manifest selects: a second weight format is not part of it (not stored, not
    served, not deployed, so no loader ever sees it beside the index); the result names it."""
    folder = make_bert_like(tmp_path / "m", shards=2)
    (folder / "pytorch_model.bin").write_bytes(b"PK\x03\x04 a stray pickle")
    r = ingest("test-org/stray", folder)
    assert r.exit_code == 0, r.stderr
    assert r.json()["ignored"] == ["pytorch_model.bin"]
    assert "not part of the model" in r.stderr and "pytorch_model.bin" in r.stderr
    assert "pytorch_model.bin" not in _recorded_paths(cli, "test-org/stray")


def test_a_manifest_that_selects_both_formats_is_refused(ingest, cli, reg, tmp_path):
    folder = make_bert_like(tmp_path / "m", shards=2)
    (folder / "pytorch_model.bin").write_bytes(b"PK\x03\x04 a stray pickle")
    manifest = write_manifest(tmp_path / "both.toml", "test-org/both", "transformers", [
        {"role": "config", "files": ["config.json"]},
        {"role": "weights", "patterns": ["model*", "pytorch_model.bin"]}])
    r = ingest("test-org/both", folder, "--manifest", manifest)
    assert r.exit_code == 5 and r.json()["error"] == "FormatError", r.stderr
    assert "pytorch_model.bin sits beside model.safetensors.index.json" in r.json()["message"]
    assert catalog_counts(reg)["models"] == 0
    assert [e["error"] for e in _refused(reg, ingest, "test-org/both")] == ["FormatError"]


def test_a_manifest_the_load_gate_would_refuse_records_nothing(ingest, cli, reg, tmp_path):
    """FlagEmbedding initialises both heads at random when one is missing: a bge-m3 manifest with one head is
    refused at ingest (exit 4) exactly as the gate refuses it at load, and no `verified` row is left."""
    folder = make_bge_m3(tmp_path / "bge")
    manifest = write_manifest(tmp_path / "m.toml", "test-org/one-head", "bge-m3", [
        {"role": "config", "files": ["config.json"]}, {"role": "weights", "files": ["model.safetensors"]},
        {"role": "head", "files": ["colbert_linear.pt"]}, {"role": "tokenizer", "files": ["tokenizer.json"]}])
    r = ingest("test-org/one-head", folder, "--manifest", manifest)
    assert r.exit_code == 4, r.stderr
    assert r.json()["details"]["missing"] == ["head: sparse_linear.pt"]
    assert catalog_counts(reg)["models"] == 0
    [event] = _refused(reg, ingest, "test-org/one-head")
    assert event["error"] == "IncompleteModel" and event["missing"] == ["head: sparse_linear.pt"]


def test_a_missing_shard(ingest, reg, tmp_path):
    folder = make_bert_like(tmp_path / "m", shards=2)
    (folder / "model-00002-of-00002.safetensors").unlink()
    r = ingest("test-org/missing-shard", folder)
    assert r.exit_code == 4, r.stderr
    assert r.json()["details"]["missing"] == ["weights: model-00002-of-00002.safetensors"]
    assert catalog_counts(reg)["models"] == 0


def test_a_truncated_safetensors_file(ingest, reg, tmp_path):
    folder = make_bert_like(tmp_path / "m")
    weights = folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-7])
    r = ingest("test-org/truncated", folder)
    assert r.exit_code == 5 and r.json()["error"] == "FormatError", r.stderr
    assert "model.safetensors: truncated" in r.json()["message"]
    assert catalog_counts(reg)["models"] == 0


def test_a_pinned_digest_that_does_not_match(ingest, reg, tmp_path):
    folder = make_bert_like(tmp_path / "m")
    manifest = tmp_path / "pin.toml"
    manifest.write_text('name = "test-org/pinned"\nfamily = "transformers"\n'
                        '[[component]]\nrole = "config"\nfiles = ["config.json"]\n'
                        f'[[component]]\nrole = "weights"\nfiles = [{{ path = "model.safetensors", sha256 = "{"0" * 64}" }}]\n')
    r = ingest("test-org/pinned", folder, "--manifest", manifest)
    assert r.exit_code == 5 and r.json()["error"] == "IntegrityError", r.stderr
    assert "model.safetensors: sha256 is" in r.json()["message"] and "0" * 64 in r.json()["message"]
    assert catalog_counts(reg)["models"] == 0


# ---- a name keeps its kind (failure 000) -----------------------------------------------------------

def test_a_bare_base_under_an_adapters_name_does_not_move_main(ingest, cli, reg, tmp_path):
    assert ingest("test-org/base", make_bert_like(tmp_path / "base")).exit_code == 0
    r = ingest("test-org/lora", make_adapter(tmp_path / "lora", base="test-org/base"))
    assert r.exit_code == 0 and r.json()["family"] == "peft", r.stderr
    adapter_commit = r.json()["commit"]
    r = ingest("test-org/lora", make_bert_like(tmp_path / "bare", seed=4))
    assert r.exit_code == 9, r.stderr
    message = r.json()["message"]
    assert "test-org/lora is recorded with an adapter" in message
    assert "adapter_config.json" in message and "adapter_model.safetensors" in message and "--manifest" in message
    shown = cli("show", "test-org/lora", "--json").json()["summary"]
    assert (shown["commit"], shown["family"]) == (adapter_commit, "peft")  # main did not move
    assert [e["error"] for e in _refused(reg, ingest, "test-org/lora")] == ["ConflictError"]
    # --manifest says so explicitly: then the name may change its kind
    explicit = write_manifest(tmp_path / "plain.toml", "test-org/lora", "transformers", [
        {"role": "config", "files": ["config.json"]}, {"role": "weights", "files": ["model.safetensors"]}])
    r = ingest("test-org/lora", tmp_path / "bare", "--manifest", explicit)
    assert r.exit_code == 0, r.stderr
    assert cli("show", "test-org/lora", "--json").json()["summary"]["family"] == "transformers"


def test_a_revision_without_the_heads_is_refused(ingest, cli, tmp_path):
    assert ingest("test-org/m3", make_bge_m3(tmp_path / "bge")).exit_code == 0
    r = ingest("test-org/m3", make_bert_like(tmp_path / "plain"))
    assert r.exit_code == 9 and "recorded with heads" in r.json()["message"], r.stderr
    assert "colbert_linear.pt" in r.json()["message"] and "sparse_linear.pt" in r.json()["message"]
    assert cli("show", "test-org/m3", "--json").json()["summary"]["family"] == "bge-m3"


# ---- states: what a re-ingest keeps, what it lifts ---------------------------------------------------

def _damage(path: Path) -> None:
    wait_for_ctime_tick(path, path.parent / "tick")
    os.chmod(path, 0o644)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    os.chmod(path, 0o444)


def test_a_rotten_blob_is_repaired_and_every_model_sharing_it_released(ingest, cli, reg, tmp_path):
    folder = make_bert_like(tmp_path / "m", hidden=64)
    assert ingest("test-org/first", folder).exit_code == 0
    assert ingest("test-org/twin", folder).exit_code == 0  # the very same bytes under a second name
    weights = reg.store.path_for(hashlib.sha256((folder / "model.safetensors").read_bytes()).hexdigest())
    _damage(weights)
    r = cli("verify", "--deep", "--json")
    assert r.exit_code == 1 and len(r.json()["quarantined"]) == 2
    assert _state(reg, "test-org/twin")[0] == "quarantined"
    r = ingest("test-org/first", folder)
    assert r.exit_code == 0, r.stderr
    out = r.json()
    assert out["state"] == "verified"
    assert [key.split("@")[0] for key in out["released"]] == ["test-org/twin"]
    assert "test-org/twin@" in r.stderr and "released" in r.stderr
    assert hash_file(weights).sha256 == weights.name  # the proven copy replaced the rotten bytes
    assert _state(reg, "test-org/first") == ("verified", None) and _state(reg, "test-org/twin") == ("verified", None)
    assert cli("verify", "--deep").exit_code == 0
    assert [e["subject"] for e in events(reg, "release")] == ["test-org/twin"]


@pytest.mark.parametrize("state, reason, after", [
    ("registered", None, "registered"),                                     # the smoke proved these bytes
    ("quarantined", "smoke: outputs differ between runs", "quarantined"),   # the model's own fault: register lifts it
    ("quarantined", "verify: model.safetensors changed", "verified"),       # these bytes were just proven again
])
def test_a_re_ingest_of_the_same_bytes_keeps_what_bytes_do_not_decide(ingest, reg, tmp_path, state, reason, after):
    folder = make_bert_like(tmp_path / "m")
    assert ingest("test-org/same", folder).exit_code == 0
    with reg.catalog.session() as s:
        s.execute(update(Model).values(state=state, state_reason=reason))
    r = ingest("test-org/same", folder)
    assert r.exit_code == 0 and r.json()["state"] == after, r.stderr
    assert _state(reg, "test-org/same") == (after, reason if after == state else None)


def test_new_bytes_under_a_quarantined_name_start_verified(ingest, reg, tmp_path):
    assert ingest("test-org/fixed", make_bert_like(tmp_path / "v1")).exit_code == 0
    with reg.catalog.session() as s:
        s.execute(update(Model).values(state="quarantined", state_reason="smoke: NaN in the outputs"))
    r = ingest("test-org/fixed", make_bert_like(tmp_path / "v2", seed=3))
    assert r.exit_code == 0 and r.json()["state"] == "verified", r.stderr


def test_a_second_revision_keeps_its_own_state(ingest, reg, tmp_path):
    """States belong to a revision: recording a new one leaves the old one's alone."""
    first = ingest("test-org/revs", make_bert_like(tmp_path / "v1")).json()["commit"]
    with reg.catalog.session() as s:
        s.execute(update(Model).values(state="registered"))
    folder = make_bert_like(tmp_path / "v2", seed=3)
    write_safetensors(folder / "model.safetensors", {"layer.0.weight": ("F32", [8, 8])}, seed=9)
    second = ingest("test-org/revs", folder).json()["commit"]
    assert first != second
    with reg.catalog.reader() as s:
        got = {m.revision.commit_sha: m.state for m in s.scalars(select(Model))}
    assert got == {first: "registered", second: "verified"}
