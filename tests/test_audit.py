"""``registry audit`` on real catalogs (SQLite and Postgres) and real filesystems: each state, what --verify records,
and the bad inputs (targets deleted or replaced by symlinks, links retargeted, a blob the store lost)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from sqlalchemy import select

from registry.catalog.models import Deployment, Event, Model
from tests.serve_helpers import add_registered, make_tiny_repo, set_state

REPO = "acme/tiny"


def _rows(result) -> dict[str, dict]:
    return {d["path"]: d for d in result.json()["deployments"]}


def _deploy(cli, target: Path, *, layout: str = "dir", node: str | None = None, name: str = REPO) -> str:
    args = ["deploy", name, "--target", target, "--layout", layout, "--json"] + (["--node", node] if node else [])
    r = cli(*args)
    assert r.exit_code == 0, r.stderr
    return r.json()["path"]


def test_states_from_the_catalog_and_from_disk(cli, reg, tmp_path):
    folder = make_tiny_repo(tmp_path / "m", big=False)
    old_commit = add_registered(reg, folder, REPO)
    plain = _deploy(cli, tmp_path / "plain")
    snap = _deploy(cli, tmp_path / "cache", layout="hf-cache")
    gone = _deploy(cli, tmp_path / "gone")
    elsewhere = _deploy(cli, tmp_path / "other-node", node="gpu-02")

    r = cli("audit", "--json")
    assert r.exit_code == 0 and r.json()["ok"] is True and r.json()["counts"] == {"ok": 4}
    row = _rows(r)[plain]
    assert row["verified_at"] is None and row["signature"] == "unsigned" and row["node"] == "test-node"
    assert set(row) >= {"deployment_id", "node", "name", "commit", "root_digest", "layout", "path", "deployed_at",
                        "deployed_by", "state", "model_state", "newest_commit", "verified_at", "verified_by",
                        "verified_host", "verify_state", "signature", "drift", "detail"}

    # by hand: a file edited (an editor writes a new file: deploy hard-links the store's read-only blobs, and
    # these tests run as root, who could write through the link), one deleted, one added; a target deleted
    (Path(plain) / "vocab.txt").unlink()
    (Path(plain) / "vocab.txt").write_text("edited by hand\n")
    (Path(plain) / "config.json").unlink()
    (Path(plain) / "notes.md").write_text("mine")
    shutil.rmtree(gone)
    r = cli("audit", "--json")
    assert r.exit_code == 0, "without --verify the catalog alone cannot know"
    r = cli("audit", "--verify", "--json")
    assert r.exit_code == 1
    rows = _rows(r)
    assert set(rows) == {plain, snap, gone}, "--verify checks this node's copies and reports this node"
    drift = rows[plain]["drift"]
    assert rows[plain]["state"] == "drifted"
    assert len(drift["changed"]) == 1 and drift["changed"][0].startswith("vocab.txt (size 15, expected ")
    assert drift["missing"] == ["config.json"] and drift["extra"] == ["notes.md"]
    assert rows[gone]["state"] == "missing" and "is gone" in rows[gone]["drift"]["target"]
    assert rows[snap]["state"] == "ok" and rows[snap]["verified_by"] == "tester"
    assert rows[snap]["verified_host"] == "test-node" and rows[snap]["verified_at"]
    assert r.json()["verification"]["by_state"] == {"drifted": 1, "missing": 1, "ok": 1}

    # what --verify found is in the catalog: the plain fleet view now shows it, with when and by whom
    r = cli("audit", "--json")
    rows = _rows(r)
    assert r.exit_code == 1 and rows[plain]["state"] == "drifted" and rows[gone]["state"] == "missing"
    assert rows[elsewhere]["state"] == "ok" and rows[elsewhere]["verified_at"] is None
    with reg.catalog.reader() as session:
        ev = session.scalars(select(Event).where(Event.action == "audit")).one()
        assert ev.subject == "test-node" and ev.actor == "tester" and ev.details["by_state"]["drifted"] == 1
        assert {p["state"] for p in ev.details["problems"]} == {"drifted", "missing"}

    # a newer registered revision makes the intact copies stale; quarantine wins over stale
    (folder / "vocab.txt").write_text("[PAD]\n[UNK]\nnew\n")
    new_commit = add_registered(reg, folder, REPO)
    assert new_commit != old_commit
    rows = _rows(cli("audit", "--json"))
    assert rows[snap]["state"] == "stale" and rows[snap]["newest_commit"] == new_commit
    assert rows[plain]["state"] == "drifted", "drift outranks stale"
    set_state(reg, REPO, "quarantined", "smoke outputs differ")
    rows = _rows(cli("audit", "--json"))
    assert rows[snap]["state"] == "quarantined" and rows[elsewhere]["state"] == "quarantined"
    text = cli("audit")
    assert text.exit_code == 1 and "quarantined" in text.stdout and "smoke outputs differ" in text.stdout


def test_filters_and_bad_arguments(cli, reg, tmp_path):
    add_registered(reg, make_tiny_repo(tmp_path / "a", big=False), "acme/a")
    add_registered(reg, make_tiny_repo(tmp_path / "b", big=False, seed=3), "acme/b")
    _deploy(cli, tmp_path / "a1", name="acme/a", node="n1")
    _deploy(cli, tmp_path / "b1", name="acme/b", node="n2")
    _deploy(cli, tmp_path / "b2", name="acme/b", node="n1")
    out = cli("audit", "--node", "n1", "--json").json()
    assert {(d["node"], d["name"]) for d in out["deployments"]} == {("n1", "acme/a"), ("n1", "acme/b")}
    out = cli("audit", "--model", "acme/b", "--json").json()
    assert {(d["node"], d["name"]) for d in out["deployments"]} == {("n2", "acme/b"), ("n1", "acme/b")}
    commit = out["deployments"][0]["commit"]
    assert len(cli("audit", "--model", f"acme/b@{commit[:10]}", "--json").json()["deployments"]) == 2
    assert cli("audit", "--model", "acme/b@0000000000", "--json").json()["deployments"] == []
    r = cli("audit", "--model", "acme/absent")
    assert r.exit_code == 3 and "acme/absent" in r.stderr and "Traceback" not in r.stderr
    r = cli("audit", "--node", "nowhere", "--json")
    assert r.exit_code == 0 and r.json()["deployments"] == []
    assert "no deployments recorded on node nowhere" in cli("audit", "--node", "nowhere").stderr
    assert cli("audit", "--scan", tmp_path, "--node", "n1").exit_code == 2
    # --verify --node checks that node's copies on this disk (a node name is a label, the disk is here)
    r = cli("audit", "--verify", "--node", "n1", "--json")
    assert r.exit_code == 0 and {d["node"] for d in r.json()["deployments"]} == {"n1"}


def test_targets_replaced_by_symlinks_are_reported_not_followed(cli, reg, tmp_path):
    folder = make_tiny_repo(tmp_path / "m", big=False)
    add_registered(reg, folder, REPO)
    plain = Path(_deploy(cli, tmp_path / "plain"))
    snap = Path(_deploy(cli, tmp_path / "cache", layout="hf-cache"))
    decoy = tmp_path / "decoy"
    shutil.copytree(folder, decoy)  # identical bytes elsewhere: following the link would call it ok
    shutil.rmtree(plain)
    plain.symlink_to(decoy)
    r = cli("audit", "--verify", "--json")
    rows = _rows(r)
    assert r.exit_code == 1 and rows[str(plain)]["state"] == "drifted"
    assert "replaced by a symlink" in rows[str(plain)]["drift"]["target"] and str(decoy) in rows[str(plain)]["drift"]["target"]
    assert rows[str(snap)]["state"] == "ok"

    # inside an HF cache: one snapshot link retargeted, one blob deleted (a broken link), one file made a symlink
    blobs = snap.parents[1] / "blobs"
    (snap / "config.json").unlink()
    (snap / "config.json").symlink_to(decoy / "config.json")
    vocab_blob = (snap / "vocab.txt").resolve()
    vocab_blob.unlink()
    rows = _rows(cli("audit", "--verify", "--json"))
    drift = rows[str(snap)]["drift"]
    assert rows[str(snap)]["state"] == "drifted"
    assert [c.split(" (")[0] for c in drift["changed"]] == ["config.json"] and "points to" in drift["changed"][0]
    assert drift["missing"] == [f"vocab.txt (blob {vocab_blob.name} missing)"]
    assert sorted(p.name for p in blobs.iterdir())  # nothing was "fixed": the cache is as we left it
    assert not vocab_blob.exists() and (snap / "config.json").is_symlink()

    # the whole snapshot folder replaced by a symlink to an identical copy
    shutil.rmtree(snap)
    snap.symlink_to(decoy)
    rows = _rows(cli("audit", "--verify", "--json"))
    assert rows[str(snap)]["state"] == "drifted" and "replaced by a symlink" in rows[str(snap)]["drift"]["target"]
    # and a target that became a file
    os.unlink(plain)
    plain.write_text("not a folder")
    rows = _rows(cli("audit", "--verify", "--json"))
    assert "no longer a folder" in rows[str(plain)]["drift"]["target"]


def test_a_catalog_row_whose_blob_the_store_lost(cli, reg, tmp_path):
    add_registered(reg, make_tiny_repo(tmp_path / "m", big=False), REPO)
    plain = _deploy(cli, tmp_path / "plain", layout="dir")
    victim = reg.store.path_for(next(sha for sha, _ in reg.store.iter_blobs()))
    victim.chmod(0o644)
    victim.unlink()
    r = cli("audit", "--verify", "--json")
    assert r.exit_code == 1
    lost = r.json()["verification"]["store_lost"]
    assert [entry["sha256"] for entry in lost] == [victim.name] and lost[0]["name"] == REPO
    row = _rows(r)[plain]
    assert row["state"] == "ok", "the deployed copy itself is intact (deploy hard-linked it)"
    assert row["drift"]["store_lost"] == [f"{REPO}/{lost[0]['path']}"]
    text = cli("audit", "--verify")
    assert "the store lost 1 blob" in text.stdout and "registry verify" in text.stdout
    with reg.catalog.reader() as session:  # reported, not "fixed": the model is not quarantined behind our back
        assert session.scalars(select(Model.state).where(Model.name == REPO)).one() == "registered"


def test_verify_uses_the_stat_cache_and_deep_rehashes(cli, reg, tmp_path):
    add_registered(reg, make_tiny_repo(tmp_path / "m", big=False), REPO)
    _deploy(cli, tmp_path / "plain")
    first = cli("audit", "--verify", "--json").json()["verification"]
    assert first["files_hashed"] == first["files_checked"] > 0
    second = cli("audit", "--verify", "--json").json()["verification"]
    assert second["files_hashed"] == 0 and second["files_checked"] == first["files_checked"]
    deep = cli("audit", "--deep", "--json").json()["verification"]
    assert deep["deep"] is True and deep["files_hashed"] == first["files_checked"]


def test_undeployed_rows_leave_the_audit_and_verify_keeps_their_record(cli, reg, tmp_path):
    add_registered(reg, make_tiny_repo(tmp_path / "m", big=False), REPO)
    target = tmp_path / "plain"
    _deploy(cli, target)
    assert cli("audit", "--verify").exit_code == 0
    assert cli("undeploy", REPO, "--target", target).exit_code == 0
    assert cli("audit", "--json").json()["deployments"] == []
    with reg.catalog.reader() as session:
        d = session.scalars(select(Deployment)).one()
        assert d.removed_at is not None and d.verify_state == "ok" and d.verified_by == "tester"


def test_the_database_refuses_an_unknown_verify_state(cli, reg, tmp_path):
    import pytest
    from sqlalchemy import update
    from sqlalchemy.exc import IntegrityError as DbIntegrityError

    add_registered(reg, make_tiny_repo(tmp_path / "m", big=False), REPO)
    _deploy(cli, tmp_path / "plain")
    with pytest.raises(DbIntegrityError):
        with reg.catalog.session() as session:
            session.execute(update(Deployment).values(verify_state="fine"))
    with reg.catalog.reader() as session:
        assert session.scalars(select(Deployment.verify_state)).one() is None


def test_signed_copies_are_checked_against_the_catalogs_signatures(cli, reg, tmp_path):
    """A signed model's copies carry model.sig (deploy writes it): audit --verify says signed, and a copy whose
    model.sig is gone or is another signature is a finding, while an unsigned model's copies stay ok."""
    from tests.sign_helpers import make_keys

    add_registered(reg, make_tiny_repo(tmp_path / "m", big=False), REPO)
    add_registered(reg, make_tiny_repo(tmp_path / "other", big=False, seed=3), "acme/unsigned")
    keys = make_keys(tmp_path / "keys")
    assert cli("sign", REPO, "--key", keys.private).exit_code == 0
    kept, removed, swapped = (_deploy(cli, tmp_path / n) for n in ("kept", "removed", "swapped"))
    plain = _deploy(cli, tmp_path / "plain", name="acme/unsigned")
    snap = _deploy(cli, tmp_path / "cache", layout="hf-cache")
    assert (Path(kept) / "model.sig").is_file() and not (Path(plain) / "model.sig").exists()

    r = cli("audit", "--verify", "--json")
    assert r.exit_code == 0, r.stdout
    rows = _rows(r)
    assert rows[kept]["signature"] == rows[snap]["signature"] == "signed" and rows[kept]["state"] == "ok"
    assert rows[plain]["signature"] == "unsigned" and rows[plain]["state"] == "ok"

    (Path(removed) / "model.sig").unlink()
    other = make_keys(tmp_path / "other-keys", "other")
    assert cli("sign", REPO, "--key", other.private, "--output", tmp_path / "other.sig").exit_code == 0
    theirs = (tmp_path / "other.sig").read_text()
    (Path(swapped) / "model.sig").unlink()
    (Path(swapped) / "model.sig").write_text(theirs.replace('"', "'", 1))  # not one of the catalog's signatures
    r = cli("audit", "--verify", "--json")
    assert r.exit_code == 1
    rows = _rows(r)
    assert rows[removed]["state"] == "unsigned" and "not in the copy" in rows[removed]["drift"]["signature"]
    assert rows[swapped]["state"] == "bad-signature" and "none of the signatures" in rows[swapped]["drift"]["signature"]
    assert rows[kept]["state"] == "ok" and rows[plain]["state"] == "ok"
