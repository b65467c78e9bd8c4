"""``registry deploy`` (and the audit of what it wrote) on real catalogs (SQLite and Postgres) and real filesystems; the
deployed HF cache is read back by the real huggingface_hub (and transformers) with HF_HUB_OFFLINE=1."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from sqlalchemy import select

from registry.catalog.models import Deployment, Event
from registry.services.add import add_folder
from tests.conftest import write_json, write_safetensors
from tests.serve_helpers import add_registered, client_env, make_tiny_repo, run_client, set_state

REPO = "acme/tiny"


def _deployments(reg) -> list[Deployment]:
    with reg.catalog.reader() as session:
        return list(session.scalars(select(Deployment).order_by(Deployment.id)))


def _tree(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): (os.readlink(p) if p.is_symlink() else "file" if p.is_file() else "dir")
            for p in sorted(root.rglob("*"))}


def test_hf_cache_layout_loads_offline(cli, reg, tmp_path):
    folder = make_tiny_repo(tmp_path / "m", big=False)
    commit = add_registered(reg, folder, REPO)
    target = tmp_path / "cache"
    r = cli("deploy", REPO, "--target", target, "--node", "gpu-07", "--json")
    assert r.exit_code == 0, r.stderr
    out = r.json()
    repo_dir = target / "models--acme--tiny"
    snap = repo_dir / "snapshots" / commit
    assert out["path"] == str(snap) and out["layout"] == "hf-cache" and out["node"] == "gpu-07"
    assert (repo_dir / "refs" / "main").read_text() == commit
    for f in folder.rglob("*"):
        if f.is_file():
            link = snap / f.relative_to(folder)
            assert link.is_symlink() and not os.path.isabs(os.readlink(link))
            assert link.read_bytes() == f.read_bytes()
            blob = link.resolve()
            assert blob.parent == (repo_dir / "blobs").resolve()
            # Same filesystem as the store: a hard link, not a copy.
            assert os.stat(blob).st_ino == os.stat(reg.store.path_for(__import__("hashlib").sha256(f.read_bytes()).hexdigest())).st_ino
    assert not [p for p in repo_dir.rglob("*") if "staging" in p.name or p.name.endswith(".incomplete")]
    rows = _deployments(reg)
    assert [(d.node, d.path, d.layout, d.commit_sha, d.actor) for d in rows] == [
        ("gpu-07", str(snap), "hf-cache", commit, "tester")]
    with reg.catalog.reader() as session:
        assert session.scalars(select(Event).where(Event.action == "deploy")).one().details["node"] == "gpu-07"

    script = """
import json
from huggingface_hub import hf_hub_download, snapshot_download
print(json.dumps({"snap": snapshot_download("acme/tiny"), "cfg": open(hf_hub_download("acme/tiny", "config.json")).read()}))
"""
    got = run_client(script, client_env("http://127.0.0.1:9", target, HF_HUB_OFFLINE="1"))
    assert got["snap"] == str(snap) and got["cfg"] == (folder / "config.json").read_text()

    again = cli("deploy", REPO, "--target", target, "--node", "gpu-07", "--json")
    assert again.exit_code == 0 and again.json()["repos"][0]["reused"] == len(list(folder.rglob("*.*")))
    live = [d for d in _deployments(reg) if d.removed_at is None]
    assert len(live) == 1 and len(_deployments(reg)) == 2
    assert cli("audit", "--node", "gpu-07", "--verify", "--json").json()["ok"] is True


def test_dir_layout_copies_across_filesystems_and_refuses_a_busy_target(cli, reg, tmp_path):
    folder = make_tiny_repo(tmp_path / "m", big=False)
    add_registered(reg, folder, REPO)
    target = tmp_path / "plain"
    r = cli("deploy", REPO, "--target", target, "--layout", "dir", "--json")
    assert r.exit_code == 0, r.stderr
    expected = {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()}
    assert {p.relative_to(target).as_posix(): p.read_bytes() for p in target.rglob("*") if p.is_file()} == expected
    assert r.json()["repos"][0]["linked"] == len(expected)
    assert not [p for p in tmp_path.iterdir() if "staging" in p.name]

    before = _tree(target)
    again = cli("deploy", REPO, "--target", target, "--layout", "dir", "--json")  # its own recorded copy: kept
    assert again.exit_code == 0 and again.json()["repos"][0]["reused"] == len(expected)
    assert again.json()["repaired"] == [] and _tree(target) == before and len(_deployments(reg)) == 2
    busy = tmp_path / "busy"
    (busy / "sub").mkdir(parents=True)
    (busy / "sub" / "mine.txt").write_text("someone else's")
    before = _tree(busy)
    r = cli("deploy", REPO, "--target", busy, "--layout", "dir")
    assert r.exit_code == 9 and "not an empty folder" in r.stderr
    assert _tree(busy) == before and len(_deployments(reg)) == 2

    shm = Path("/dev/shm")
    if shm.is_dir() and os.stat(shm).st_dev != os.stat(tmp_path).st_dev:
        other = shm / f"registry-test-{os.getpid()}-{tmp_path.name}"
        try:
            r = cli("deploy", REPO, "--target", other, "--layout", "dir", "--json")
            assert r.exit_code == 0, r.stderr
            assert r.json()["repos"][0]["copied"] == len(expected) and r.json()["repos"][0]["linked"] == 0
            assert {p.relative_to(other).as_posix(): p.read_bytes() for p in other.rglob("*") if p.is_file()} == expected
            # A copy can be edited without touching the store: same size, other bytes. The stat cache of the
            # deployed files sees its mtime/ctime move, so --verify re-hashes it; --deep hashes everything.
            vocab = other / "vocab.txt"
            assert cli("audit", "--verify", "--json").json()["ok"] is True  # proven once: now in the stat cache
            vocab.write_bytes(vocab.read_bytes().upper())
            assert cli("audit", "--json").json()["ok"] is True  # the catalog alone cannot know
            for flag in ("--verify", "--deep"):
                r = cli("audit", flag, "--json")
                assert r.exit_code == 1
                assert [(d["path"], d["state"], d["drift"]["changed"]) for d in r.json()["deployments"]
                        if d["state"] != "ok"] == [(str(other), "drifted", ["vocab.txt (content differs)"])]
        finally:
            import shutil

            shutil.rmtree(other, ignore_errors=True)


def test_only_registered_models_are_deployed(cli, reg, tmp_path):
    add_folder(reg, make_tiny_repo(tmp_path / "v", big=False), "acme/verified")
    add_registered(reg, make_tiny_repo(tmp_path / "q", big=False, seed=4), "acme/quarantined")
    set_state(reg, "acme/quarantined", "quarantined", "outputs differ between two runs")
    target = tmp_path / "cache"
    r = cli("deploy", "acme/verified", "--target", target)
    assert r.exit_code == 9 and "only registered models are deployed" in r.stderr
    r = cli("deploy", "acme/quarantined", "--target", target, "--json")
    assert r.exit_code == 9 and "never deployed" in r.json()["message"] and "outputs differ" in r.json()["message"]
    assert not target.exists() and _deployments(reg) == []


def test_deploy_bad_inputs(cli, reg, tmp_path):
    add_registered(reg, make_tiny_repo(tmp_path / "m", big=False), REPO)
    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    assert cli("deploy", REPO, "--target", tmp_path / "t", "--layout", "zip").exit_code == 2
    assert cli("deploy", "acme/absent", "--target", tmp_path / "t").exit_code == 3
    r = cli("deploy", REPO, "--target", a_file)
    assert r.exit_code == 2 and "is a file" in r.stderr
    assert cli("deploy", f"{REPO}@v404", "--target", tmp_path / "t").exit_code == 3
    # A blob lost from the store: refused before anything is written.
    victim = next(p for _, p in reg.store.iter_blobs())
    victim.chmod(0o644)
    victim.unlink()
    r = cli("deploy", REPO, "--target", tmp_path / "t2")
    assert r.exit_code == 10 and "registry verify" in r.stderr and not (tmp_path / "t2").exists()
    assert _deployments(reg) == []


def test_adapter_brings_its_base_into_the_cache(cli, reg, tmp_path):
    base = make_tiny_repo(tmp_path / "base", big=False)
    add_registered(reg, base, "acme/base")
    adapter = tmp_path / "adapter"
    write_json(adapter / "adapter_config.json", {"peft_type": "LORA", "base_model_name_or_path": "acme/base",
                                                 "r": 2, "target_modules": ["query"]})
    write_safetensors(adapter / "adapter_model.safetensors", {"base_model.model.layer.0.lora_A.weight": ("F32", [2, 8])})
    add_registered(reg, adapter, "acme/adapter")
    target = tmp_path / "cache"
    out = cli("deploy", "acme/adapter", "--target", target, "--json").json()
    assert [r["repo_id"] for r in out["repos"]] == ["acme/base", "acme/adapter"]
    assert (target / "models--acme--base" / "refs" / "main").is_file()
    assert (Path(out["path"]) / "adapter_config.json").is_file()
    plain = cli("deploy", "acme/adapter", "--target", tmp_path / "plain", "--layout", "dir", "--json")
    assert plain.exit_code == 0 and plain.json()["not_included"][0].startswith("acme/base@")
    assert "deploy it too" in cli("deploy", "acme/adapter", "--target", tmp_path / "plain2", "--layout", "dir").stderr


@pytest.mark.ml
def test_transformers_loads_a_deployed_cache_offline(cli, reg, tmp_path, minilm_dir):
    add_registered(reg, minilm_dir, "sentence-transformers/all-MiniLM-L6-v2")
    target = tmp_path / "cache"
    assert cli("deploy", "sentence-transformers/all-MiniLM-L6-v2", "--target", target).exit_code == 0
    script = """
import json, sys
from registry.loaders.runtime import import_torch  # environment: hide this machine's broken torchvision
torch = import_torch()
from transformers import AutoModel, AutoTokenizer
tok = AutoTokenizer.from_pretrained("sentence-transformers/all-MiniLM-L6-v2")
model = AutoModel.from_pretrained("sentence-transformers/all-MiniLM-L6-v2").eval()
local = AutoModel.from_pretrained(sys.argv[1]).eval()
batch = tok(["hello world"], return_tensors="pt")
with torch.no_grad():
    print(json.dumps({"diff": float((model(**batch).last_hidden_state - local(**batch).last_hidden_state).abs().max())}))
"""
    got = run_client(script, client_env("http://127.0.0.1:9", target, HF_HUB_OFFLINE="1"), str(minilm_dir))
    assert got == {"diff": 0.0}


def test_concurrent_deploys_of_one_model_converge(reg, tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    from registry.services.deploy import deploy

    folder = make_tiny_repo(tmp_path / "m", big=False)
    commit = add_registered(reg, folder, REPO)
    target = tmp_path / "cache"
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = [f.result() for f in [pool.submit(deploy, reg, REPO, target, node=f"n{i}") for i in range(4)]]
    snap = target / "models--acme--tiny" / "snapshots" / commit
    assert {r.path for r in results} == {str(snap)}
    for f in folder.rglob("*"):
        if f.is_file():
            assert (snap / f.relative_to(folder)).read_bytes() == f.read_bytes()
    leftovers = [p for p in (target / "models--acme--tiny").rglob("*") if "staging" in p.name or ".incomplete" in p.name
                 or p.name.endswith(".link")]
    assert leftovers == [] and len(_deployments(reg)) == 4
