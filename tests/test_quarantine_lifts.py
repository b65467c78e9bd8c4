"""Each quarantine cause has one lift (registry/catalog/states.py):

- ``verify:`` (a blob missing or changed): bytes proven again. An ingest of those bytes repairs the store
  (tests/test_ingest_paths.py, add and pull, for every model sharing the blob), and `verify` releases a
  model once its blobs are intact (tests/test_verify.py);
- ``smoke:`` (the model's own fault): `registry register` once the cause is fixed;
- ``merge proof:``: `registry merge` again, whose passing proof lifts it (`register` cannot).
"""

from __future__ import annotations

import pytest
from sqlalchemy import select, update

from registry.catalog.models import Event, Model
from tests.models_helpers import (SQLITE_ONLY, add_base_and_adapter, bert_models,  # noqa: F401
                                  build_tiny_bert, write_manifest)

pytestmark = [pytest.mark.ml, SQLITE_ONLY]


def _state(reg, name: str) -> tuple[str, str | None]:
    with reg.catalog.reader() as s:
        m = s.scalars(select(Model).where(Model.name == name).order_by(Model.id.desc())).first()
        return m.state, m.state_reason


def _bert_manifest(path, name: str, family: str):
    return write_manifest(path, name, family, [
        {"role": "config", "files": ["config.json"]}, {"role": "weights", "files": ["model.safetensors"]},
        {"role": "tokenizer", "files": ["vocab.txt", "tokenizer.json", "tokenizer_config.json"]}])


def test_a_smoke_quarantine_is_lifted_by_register_once_the_cause_is_fixed(cli, reg, tmp_path):
    folder = build_tiny_bert(tmp_path / "bert")
    # the cause: a manifest that names the wrong family (remote code, with no code to run: the load fails)
    wrong = write_manifest(tmp_path / "wrong.toml", "acme/bert", "remote-code", [
        {"role": "config", "files": ["config.json"]}, {"role": "weights", "files": ["model.safetensors"]},
        {"role": "code", "files": ["config.json"]}])
    assert cli("add", folder, "--name", "acme/bert", "--manifest", wrong).exit_code == 0
    r = cli("register", "acme/bert", "--device", "cpu")
    assert r.exit_code == 11 and _state(reg, "acme/bert")[0] == "quarantined"
    assert _state(reg, "acme/bert")[1].startswith("smoke: ")
    # the same bytes under the same manifest keep the quarantine: nothing that caused it has changed
    assert cli("add", folder, "--name", "acme/bert", "--manifest", wrong).exit_code == 0
    assert _state(reg, "acme/bert")[0] == "quarantined"
    # fixed: the corrected manifest records the model anew, and register proves it
    right = _bert_manifest(tmp_path / "right.toml", "acme/bert", "transformers")
    r = cli("add", folder, "--name", "acme/bert", "--manifest", right, "--json")
    assert r.exit_code == 0 and r.json()["state"] == "verified"
    r = cli("register", "acme/bert", "--device", "cpu")
    assert r.exit_code == 0, r.stderr
    assert _state(reg, "acme/bert") == ("registered", None)


def test_register_re_runs_on_a_quarantined_model_and_lifts_it(cli, reg, tmp_path):
    """A model quarantined for what was not its fault (an older registry quarantined BGE-M3s when
    FlagEmbedding failed to import): `register` runs again, and its pass lifts the quarantine."""
    folder = build_tiny_bert(tmp_path / "bert")
    manifest = _bert_manifest(tmp_path / "m.toml", "acme/bert", "transformers")
    assert cli("add", folder, "--name", "acme/bert", "--manifest", manifest).exit_code == 0
    old = ("smoke: acme/bert: loading with the transformers family's library failed: ModuleNotFoundError: "
           "No module named 'transformers.modeling_attn_mask_utils'")
    with reg.catalog.session() as s:
        s.execute(update(Model).values(state="quarantined", state_reason=old))
    assert cli("load", "acme/bert", "--device", "cpu").exit_code == 9
    r = cli("register", "acme/bert", "--device", "cpu")
    assert r.exit_code == 0, r.stderr
    assert "its quarantine is lifted" in r.stdout
    assert _state(reg, "acme/bert") == ("registered", None)
    with reg.catalog.reader() as s:
        [event] = s.scalars(select(Event).where(Event.action == "register")).all()
    assert event.details["lifted"] == old
    assert cli("load", "acme/bert", "--device", "cpu").exit_code == 0


def test_a_merge_proof_quarantine_is_lifted_by_merging_again(reg, cli, tmp_path, bert_models):  # noqa: F811
    add_base_and_adapter(reg, tmp_path, base=bert_models["base"], adapter=bert_models["adapter"], family="peft",
                         base_family="transformers")
    r = cli("merge", "acme/adapter", "--name", "acme/merged", "--json")
    assert r.exit_code == 0, r.stderr
    commit = r.json()["commit"]
    # as a merge whose proof failed leaves it (the proof itself is tested in test_merge.py)
    with reg.catalog.session() as s:
        s.execute(update(Model).where(Model.name == "acme/merged")
                  .values(state="quarantined", state_reason="merge proof: merged output differs from adapter+base"))
    r = cli("register", "acme/merged", "--device", "cpu")
    assert r.exit_code == 9 and "registry merge ADAPTER --name acme/merged" in r.stderr
    r = cli("merge", "acme/adapter", "--name", "acme/merged", "--json")
    assert r.exit_code == 0, r.stderr
    assert r.json()["commit"] == commit  # the same bytes: the same revision, its quarantine lifted
    assert _state(reg, "acme/merged") == ("registered", None)
    # a name that is taken for any other reason stays taken
    r = cli("merge", "acme/adapter", "--name", "acme/merged")
    assert r.exit_code == 9 and "already exists" in r.stderr
