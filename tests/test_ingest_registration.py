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


@pytest.mark.ml
def test_the_python_api_registers_as_the_cli_does(registry_env, minilm_dir, smoke_on):
    import registry

    result = registry.add(minilm_dir, MINILM, device="cpu")
    assert result.state == "registered" and result.registration.smoke.passed is True
    assert registry.verify(MINILM).ok


def test_the_python_api_register_flag_stops_at_verified(registry_env, hub, tmp_path, smoke_on):  # noqa: F811
    import registry

    added = registry.add(make_bert_like(tmp_path / "m"), "test-org/api-add", register=False)
    assert added.state == "verified" and added.registration.smoke is None
    assert "left verified" in added.registration.message
    hub.add_repo("test-org/api-pull", make_bert_like(tmp_path / "p", seed=2))
    pulled = registry.pull("test-org/api-pull", endpoint=hub.url, register=False)
    assert pulled.state == "verified" and "registry register test-org/api-pull" in pulled.registration.message


def test_the_python_api_follows_registry_smoke_by_default(registry_env, tmp_path, monkeypatch):
    import registry

    monkeypatch.setenv("REGISTRY_SMOKE", "0")
    added = registry.add(make_bert_like(tmp_path / "m"), "test-org/api-default")
    assert added.state == "verified" and "REGISTRY_SMOKE=0" in added.registration.message


@pytest.mark.ml
def test_the_python_api_registration_can_quarantine(registry_env, tmp_path, smoke_on):
    import registry
    from registry.errors import SmokeFailed

    # random bytes in a BERT-shaped folder: complete and verified, but no model loads from them
    with pytest.raises(SmokeFailed):
        registry.add(make_bert_like(tmp_path / "m"), "test-org/api-broken", device="cpu")
    assert registry.verify("test-org/api-broken").ok  # recorded: its bytes are fine, the model is not
