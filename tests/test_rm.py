"""`registry rm`: a model leaves the catalog, refused while deployed or a base unless --force; its blobs go at
the next gc; recorded in the event log."""

from __future__ import annotations

from sqlalchemy import select

from registry.catalog.models import Deployment, Event
from tests.add_helpers import catalog_counts, make_adapter, store_files
from tests.conftest import make_bert_like
from tests.serve_helpers import add_registered, make_tiny_repo


def test_rm_then_gc_frees_the_blobs(cli, reg, tmp_path):
    assert cli("add", make_bert_like(tmp_path / "m"), "--name", "acme/tiny").exit_code == 0
    blobs_before = store_files(reg)
    r = cli("rm", "acme/tiny", "--json")
    assert r.exit_code == 0, r.stderr
    out = r.json()
    assert [x["name"] for x in out["removed"]] == ["acme/tiny"] and out["files_released"] == 4
    assert cli("list", "--json").json() == {"models": []}
    assert cli("show", "acme/tiny").exit_code == 3
    assert store_files(reg) == blobs_before  # nothing deleted until gc
    assert cli("verify").exit_code == 0  # garbage awaiting gc is not a problem of any model
    gc = cli("gc", "--grace", "0", "--json")
    assert gc.exit_code == 0 and len(gc.json()["blobs_removed"]) == 4
    assert store_files(reg) == [] and cli("verify").exit_code == 0
    counts = catalog_counts(reg)
    assert counts["files"] == 0 and counts["models"] == 0 and counts["components"] == 0
    with reg.catalog.reader() as s:
        [event] = s.scalars(select(Event).where(Event.action == "rm")).all()
        assert event.subject == "acme/tiny" and event.details["forced"] is False


def test_rm_one_revision_keeps_the_others(cli, tmp_path):
    assert cli("add", make_bert_like(tmp_path / "a"), "--name", "acme/tiny", "--revision", "v1").exit_code == 0
    assert cli("add", make_bert_like(tmp_path / "b", seed=5), "--name", "acme/tiny").exit_code == 0
    v1 = cli("show", "acme/tiny@v1", "--json").json()["summary"]["commit"]
    r = cli("rm", f"acme/tiny@{v1[:12]}")
    assert r.exit_code == 0, r.stderr
    assert f"removed acme/tiny@{v1[:12]}" in r.stdout
    [left] = cli("list", "--json").json()["models"]
    assert left["commit"] != v1
    gc = cli("gc", "--grace", "0", "--json").json()
    assert len(gc["blobs_removed"]) == 1  # v1's own weights; the config and tokenizer are shared with v2
    assert cli("verify").exit_code == 0


def test_rm_of_a_base_is_refused_unless_forced(cli, tmp_path):
    assert cli("add", make_bert_like(tmp_path / "base"), "--name", "acme/base").exit_code == 0
    assert cli("add", make_adapter(tmp_path / "a", "acme/base"), "--name", "acme/adapter").exit_code == 0
    r = cli("rm", "acme/base")
    assert r.exit_code == 9
    assert "is the base of acme/adapter@" in r.stderr and "--force" in r.stderr
    assert len(cli("list", "--json").json()["models"]) == 2  # nothing removed
    forced = cli("rm", "acme/base", "--force", "--json")
    assert forced.exit_code == 0 and forced.json()["forced"] is True
    # the adapter keeps its own base component (and the base's blobs stay referenced by it)
    assert cli("verify", "acme/adapter").exit_code == 0
    assert cli("gc", "--grace", "0").exit_code == 0 and cli("verify").exit_code == 0


def test_rm_of_a_deployed_model_is_refused_unless_forced(cli, reg, tmp_path):
    add_registered(reg, make_tiny_repo(tmp_path / "m", big=False), "acme/tiny")
    target = tmp_path / "cache"
    assert cli("deploy", "acme/tiny", "--target", target, "--node", "gpu-01").exit_code == 0
    r = cli("rm", "acme/tiny")
    assert r.exit_code == 9 and "is deployed at gpu-01:" in r.stderr
    forced = cli("rm", "acme/tiny", "--force")
    assert forced.exit_code == 0 and "no longer recorded" in forced.stdout
    with reg.catalog.reader() as s:
        assert s.scalars(select(Deployment)).all() == []
    assert any(target.rglob("config.json"))  # rm never touches a deployed copy on disk


def test_rm_bad_inputs(cli):
    assert cli("rm", "acme/absent").exit_code == 3
    r = cli("rm", "acme/absent@deadbeef")
    assert r.exit_code == 3 and "Traceback" not in r.stderr
    assert cli("rm").exit_code == 2
