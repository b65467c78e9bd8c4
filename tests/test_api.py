"""The Python API: what `import registry` exports, typed results, and a Registry that closes its engine."""

from __future__ import annotations

import importlib.metadata

import pytest

import registry
from registry.config import Settings
from tests.conftest import make_bert_like


def test_everything_in_all_resolves_and_includes_results_and_errors():
    for name in registry.__all__:
        assert getattr(registry, name) is not None
    assert {"AddResult", "PullResult", "VerifyReport", "RegisterResult", "RegistryError", "IncompleteModel",
            "MissingExtra", "Registry", "Settings", "__version__"} <= set(registry.__all__)
    assert issubclass(registry.IncompleteModel, registry.RegistryError)
    assert registry.__version__ == importlib.metadata.version("registry")
    with pytest.raises(AttributeError):
        registry.no_such_name  # noqa: B018


def test_registry_is_a_context_manager_that_closes_its_engine(registry_env):
    with registry.Registry.open(Settings.from_env()) as reg:
        with reg.catalog.reader() as session:
            session.execute(__import__("sqlalchemy").text("SELECT 1"))
        assert reg.catalog.engine.pool.checkedin() >= 1
    assert reg.catalog.engine.pool.checkedin() == 0  # disposed: no connection left open


def test_add_and_verify_return_their_frozen_results(registry_env, tmp_path):
    result = registry.add(make_bert_like(tmp_path / "m"), "acme/tiny")
    assert isinstance(result, registry.AddResult) and result.state == "verified"
    with pytest.raises(AttributeError):
        result.state = "registered"  # frozen
    report = registry.verify()
    assert isinstance(report, registry.VerifyReport) and report.ok
    with pytest.raises(registry.ModelNotFound):
        registry.verify("acme/absent")
