"""A mirror host without the ML extras: ingest still works, registration degrades clearly.

These run where torch is NOT installed (CI's torch-free venv runs them with `-m torchfree`); with torch
present they are skipped, since the registration itself is covered by test_ingest_registration."""

import importlib.util

import pytest

from tests.conftest import make_bert_like

pytestmark = [
    pytest.mark.torchfree,
    pytest.mark.skipif(importlib.util.find_spec("torch") is not None, reason="torch is installed here"),
]


def test_add_without_torch_stays_verified_and_says_how_to_register(cli, tmp_path, monkeypatch):
    monkeypatch.setenv("REGISTRY_SMOKE", "1")
    r = cli("add", make_bert_like(tmp_path / "m"), "--name", "acme/tiny", "--json")
    assert r.exit_code == 0, r.stderr
    out = r.json()
    assert out["state"] == "verified"
    assert "no smoke inference ran" in out["registration"]["message"]
    assert "registry register acme/tiny" in r.stderr


def test_load_without_torch_is_a_clear_missing_extra(cli, tmp_path):
    assert cli("add", make_bert_like(tmp_path / "m"), "--name", "acme/tiny").exit_code == 0
    r = cli("load", "acme/tiny", "--device", "cpu")
    assert r.exit_code == 12, r.stderr
    assert "pip install" in r.stderr
