"""``registry undeploy``: removes exactly what deploy wrote and recorded, refuses what it did not write, keeps what
others need; the HF cache left behind is read back by the real huggingface_hub (offline)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from sqlalchemy import select

from registry.catalog.models import Deployment, Event
from tests.conftest import write_json, write_safetensors
from tests.serve_helpers import add_registered, client_env, make_tiny_repo, run_client

REPO = "acme/tiny"


def _tree(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*")) if root.exists() else []


def _live(reg) -> list[Deployment]:
    with reg.catalog.reader() as session:
        return list(session.scalars(select(Deployment).where(Deployment.removed_at.is_(None))))


def test_dir_copy_removed_and_files_it_did_not_write_kept(cli, reg, tmp_path):
    folder = make_tiny_repo(tmp_path / "m", big=False)
    add_registered(reg, folder, REPO)
    target = tmp_path / "plain"
    assert cli("deploy", REPO, "--target", target, "--layout", "dir").exit_code == 0
    (target / "1_Pooling" / "my-notes.txt").write_text("mine")
    r = cli("undeploy", REPO, "--target", target, "--json")
    assert r.exit_code == 0, r.stderr
    assert _tree(target) == ["1_Pooling", "1_Pooling/my-notes.txt"]
    assert r.json()["kept"] == [str(target / "1_Pooling" / "my-notes.txt")]
    assert _live(reg) == [] and reg.store.has(next(iter(dict(reg.store.iter_blobs())))), "store untouched"
    with reg.catalog.reader() as session:
        ev = session.scalars(select(Event).where(Event.action == "undeploy")).one()
        assert ev.subject == REPO and ev.details["path"] == str(target) and ev.actor == "tester"
    # a second time: nothing recorded there any more
    again = cli("undeploy", REPO, "--target", target)
    assert again.exit_code == 9 and "no live deployment" in again.stderr


def test_refuses_targets_it_did_not_write(cli, reg, tmp_path):
    folder = make_tiny_repo(tmp_path / "m", big=False)
    add_registered(reg, folder, REPO)
    target = tmp_path / "plain"
    assert cli("deploy", REPO, "--target", target, "--layout", "dir").exit_code == 0
    by_hand = tmp_path / "by-hand"
    shutil.copytree(folder, by_hand)
    r = cli("undeploy", REPO, "--target", by_hand)
    assert r.exit_code == 9 and "removes only copies the registry wrote" in r.stderr and str(target) in r.stderr
    assert _tree(by_hand) == _tree(folder)
    assert cli("undeploy", "acme/absent", "--target", target).exit_code == 3
    assert cli("undeploy", REPO, "--target", target, "--node", "other-node").exit_code == 9
    assert len(_live(reg)) == 1 and _tree(target) == _tree(folder)


def test_changed_copy_refused_unless_forced(cli, reg, tmp_path):
    add_registered(reg, make_tiny_repo(tmp_path / "m", big=False), REPO)
    target = tmp_path / "plain"
    assert cli("deploy", REPO, "--target", target, "--layout", "dir").exit_code == 0
    (target / "vocab.txt").unlink()
    (target / "vocab.txt").write_text("my edits")
    before = _tree(target)
    r = cli("undeploy", REPO, "--target", target, "--json")
    assert r.exit_code == 9 and "vocab.txt" in r.json()["message"] and "--force" in r.json()["message"]
    assert _tree(target) == before and len(_live(reg)) == 1
    r = cli("undeploy", REPO, "--target", target, "--force", "--json")
    assert r.exit_code == 0 and r.json()["forced"] is True and not target.exists()


def test_symlinked_target_is_never_followed(cli, reg, tmp_path):
    folder = make_tiny_repo(tmp_path / "m", big=False)
    add_registered(reg, folder, REPO)
    target = tmp_path / "plain"
    assert cli("deploy", REPO, "--target", target, "--layout", "dir").exit_code == 0
    decoy = tmp_path / "decoy"
    shutil.copytree(folder, decoy)
    shutil.rmtree(target)
    target.symlink_to(decoy)
    r = cli("undeploy", REPO, "--target", target)
    assert r.exit_code == 9 and "replaced by a symlink" in r.stderr
    r = cli("undeploy", REPO, "--target", target, "--force", "--json")
    assert r.exit_code == 0 and r.json()["removed"] == [] and _tree(decoy) == _tree(folder) and target.is_symlink()
    assert _live(reg) == []


def test_target_already_gone_just_drops_the_record(cli, reg, tmp_path):
    add_registered(reg, make_tiny_repo(tmp_path / "m", big=False), REPO)
    target = tmp_path / "plain"
    assert cli("deploy", REPO, "--target", target, "--layout", "dir").exit_code == 0
    shutil.rmtree(target)
    r = cli("undeploy", REPO, "--target", target, "--json")
    assert r.exit_code == 0 and r.json()["already_gone"] is True and _live(reg) == []


def test_hf_cache_keeps_what_other_deployments_need(cli, reg, tmp_path):
    base = make_tiny_repo(tmp_path / "base", big=False)
    add_registered(reg, base, "acme/base")
    adapter = tmp_path / "adapter"
    write_json(adapter / "adapter_config.json", {"peft_type": "LORA", "base_model_name_or_path": "acme/base",
                                                 "r": 2, "target_modules": ["query"]})
    write_safetensors(adapter / "adapter_model.safetensors", {"base_model.model.layer.0.lora_A.weight": ("F32", [2, 8])})
    add_registered(reg, adapter, "acme/adapter")
    cache = tmp_path / "cache"
    assert cli("deploy", "acme/adapter", "--target", cache).exit_code == 0
    assert cli("deploy", "acme/base", "--target", cache).exit_code == 0
    (cache / "models--acme--adapter" / ".no_exist").mkdir()  # huggingface_hub's own bookkeeping: not ours

    r = cli("undeploy", "acme/adapter", "--target", cache, "--json")
    assert r.exit_code == 0, r.stderr
    assert any("acme/base@" in k and "another deployment" in k for k in r.json()["kept"])
    assert _tree(cache / "models--acme--adapter") == [".no_exist"]
    base_before = _tree(cache / "models--acme--base")
    assert base_before and cli("audit", "--verify", "--json").json()["ok"] is True
    script = """
import json
from huggingface_hub import snapshot_download
print(json.dumps({"snap": snapshot_download("acme/base")}))
"""
    got = run_client(script, client_env("http://127.0.0.1:9", cache, HF_HUB_OFFLINE="1"))
    assert Path(got["snap"]).parents[1].name == "models--acme--base"

    assert cli("undeploy", "acme/base", "--target", cache).exit_code == 0
    assert not (cache / "models--acme--base").exists() and _live(reg) == []


def test_two_revisions_in_one_cache_need_a_revision(cli, reg, tmp_path):
    folder = make_tiny_repo(tmp_path / "m", big=False)
    first = add_registered(reg, folder, REPO)
    cache = tmp_path / "cache"
    assert cli("deploy", f"{REPO}@{first}", "--target", cache).exit_code == 0
    (folder / "vocab.txt").write_text("[PAD]\nother\n")
    second = add_registered(reg, folder, REPO)
    assert cli("deploy", f"{REPO}@{second}", "--target", cache).exit_code == 0
    r = cli("undeploy", REPO, "--target", cache)
    assert r.exit_code == 9 and "say which" in r.stderr
    assert cli("undeploy", f"{REPO}@{first[:12]}", "--target", cache).exit_code == 0
    snaps = cache / "models--acme--tiny" / "snapshots"
    assert sorted(p.name for p in snaps.iterdir()) == [second]
    assert (cache / "models--acme--tiny" / "refs" / "main").read_text() == second
    # the blobs both revisions share stay; the one only the first had is gone
    linked = {os.readlink(p) for p in (snaps / second).rglob("*") if p.is_symlink()}
    blobs = {p.name for p in (cache / "models--acme--tiny" / "blobs").iterdir()}
    assert blobs == {Path(t).name for t in linked}
    assert cli("audit", "--verify", "--json").json()["ok"] is True


def test_the_signature_deploy_writes_beside_a_copy_is_neither_extra_nor_left_behind(cli, reg, tmp_path):
    """Signed deployments carry a model.sig (a regular file in `dir`, a blob + link in an HF cache snapshot).
    (In an unsigned model's copy a model.sig is an extra file: tests/reliability/test_corruption.py.)"""
    from tests.sign_helpers import make_keys

    add_registered(reg, make_tiny_repo(tmp_path / "m", big=False), REPO)
    keys = make_keys(tmp_path / "keys")
    assert cli("sign", REPO, "--key", keys.private).exit_code == 0
    plain, cache = tmp_path / "plain", tmp_path / "cache"
    assert cli("deploy", REPO, "--target", plain, "--layout", "dir").exit_code == 0
    snap = Path(cli("deploy", REPO, "--target", cache, "--json").json()["path"])
    assert (plain / "model.sig").is_file() and (snap / "model.sig").is_symlink()
    assert cli("audit", "--verify", "--json").json()["ok"] is True
    assert cli("undeploy", REPO, "--target", plain).exit_code == 0 and not plain.exists()
    assert cli("undeploy", REPO, "--target", cache).exit_code == 0
    assert not (cache / "models--acme--tiny").exists()
