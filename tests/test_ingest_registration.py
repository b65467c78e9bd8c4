"""`pull` and `add` end with the smoke registration: a real model ends `registered`, `--no-smoke`
stops at `verified` and says so, and an unloadable model ends `quarantined` (exit 11)."""

import pytest

from tests.conftest import make_bert_like
from tests.pull_helpers import hub  # noqa: F401  (fixture)

MINILM = "sentence-transformers/all-MiniLM-L6-v2"


@pytest.fixture
def smoke_on(monkeypatch):
    monkeypatch.setenv("REGISTRY_SMOKE", "1")


@pytest.mark.ml
def test_pull_registers_real_minilm(cli, hub, minilm_dir, smoke_on, monkeypatch):  # noqa: F811
    hub.add_repo(MINILM, minilm_dir)
    monkeypatch.setenv("HF_ENDPOINT", hub.url)
    r = cli("pull", MINILM, "--device", "cpu", "--json")
    assert r.exit_code == 0, r.stderr
    out = r.json()
    assert out["state"] == "registered"
    assert out["registration"]["smoke"]["passed"] is True
    assert out["registration"]["smoke"]["device"] == "cpu"
    shown = cli("show", MINILM, "--json").json()
    assert shown["summary"]["state"] == "registered"
    assert len(shown["smoke_runs"]) == 1 and shown["smoke_runs"][0]["fingerprint"]


def test_pull_no_smoke_stays_verified_and_says_so(cli, hub, tmp_path, smoke_on, monkeypatch):  # noqa: F811
    hub.add_repo("test-org/plain", make_bert_like(tmp_path / "m"))
    monkeypatch.setenv("HF_ENDPOINT", hub.url)
    r = cli("pull", "test-org/plain", "--no-smoke", "--json")
    assert r.exit_code == 0, r.stderr
    assert r.json()["state"] == "verified"
    assert "left verified (--no-smoke)" in r.stderr and "registry register test-org/plain" in r.stderr


@pytest.mark.ml
def test_pull_of_unloadable_model_is_quarantined(cli, hub, tmp_path, smoke_on, monkeypatch):  # noqa: F811
    # Random bytes in a BERT-shaped folder: the files are complete and verified, but no model loads from them.
    hub.add_repo("test-org/broken", make_bert_like(tmp_path / "m"))
    monkeypatch.setenv("HF_ENDPOINT", hub.url)
    r = cli("pull", "test-org/broken", "--device", "cpu")
    assert r.exit_code == 11, r.stderr
    assert "quarantined" in r.stderr
    assert cli("show", "test-org/broken", "--json").json()["summary"]["state"] == "quarantined"
