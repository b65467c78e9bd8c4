"""``registry audit --scan``: HF caches written by the real huggingface_hub (from our mirror) and by hand, and plain
folders of model folders; each model judged by its files; every bad input reported, none fixed, none fatal."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import select

from registry.catalog.models import Event, Model
from registry.services.deploy import cache_folder_name
from registry.services.scan_layout import repo_id_from_cache_name
from tests.conftest import write_json, write_safetensors
from tests.serve_helpers import add_registered, client_env, make_tiny_repo, run_client, serve

DOWNLOAD = """
import json, sys
from huggingface_hub import hf_hub_download, snapshot_download
snap = snapshot_download("acme/tiny")
one = hf_hub_download("acme/other", "config.json")
print(json.dumps({"snap": snap, "one": one}))
"""


def _by_repo(result) -> dict[str, dict]:
    return {m["repo_id"] or m["path"]: m for m in result.json()["models"]}


def _root_digest(reg, name: str) -> str:
    with reg.catalog.reader() as session:
        return session.scalars(select(Model.root_digest).where(Model.name == name)).one()


def _hand_made_cache_repo(cache: Path, repo_id: str, commit: str, files: dict[str, bytes]) -> Path:
    """An HF cache repo folder laid out by hand the way huggingface_hub does (blobs named by sha256 here)."""
    import hashlib

    folder = cache / cache_folder_name(repo_id)
    snap = folder / "snapshots" / commit
    (folder / "blobs").mkdir(parents=True, exist_ok=True)
    for rel, data in files.items():
        etag = hashlib.sha256(data).hexdigest()
        (folder / "blobs" / etag).write_bytes(data)
        link = snap / rel
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(folder / "blobs" / etag, link.parent))
    (folder / "refs").mkdir(exist_ok=True)
    (folder / "refs" / "main").write_text(commit)
    return folder


def test_an_hf_cache_made_by_huggingface_hub(cli, reg, tmp_path):
    add_registered(reg, make_tiny_repo(tmp_path / "m", big=True), "acme/tiny")
    add_registered(reg, make_tiny_repo(tmp_path / "o", big=False, seed=5), "acme/other")
    cache = tmp_path / "hf" / "hub"
    with serve(reg) as server:
        got = run_client(DOWNLOAD, client_env(server.url, cache, HF_HUB_DISABLE_XET="1"))
    snap = Path(got["snap"])
    bge = _hand_made_cache_repo(cache, "BAAI/bge-m3", "b" * 40, {
        "config.json": b'{"model_type": "xlm-roberta"}', "model.safetensors": b"\0" * 64,
        "sparse_linear.pt": b"sparse", "tokenizer.json": b"{}", "tokenizer_config.json": b"{}",
        "special_tokens_map.json": b"{}", "sentencepiece.bpe.model": b"spm"})

    r = cli("audit", "--scan", tmp_path / "hf", "--json")  # HF_HOME works too: its hub/ is the cache
    assert r.exit_code == 1, r.stdout
    out = r.json()
    assert out["layout"] == "hf-cache" and out["problems"] == []
    models = _by_repo(r)
    tiny = models["acme/tiny"]
    assert tiny["verdict"] == "matches" and tiny["match"].startswith("acme/tiny@")
    assert tiny["root_digest"] == _root_digest(reg, "acme/tiny") and tiny["model_state"] == "registered"
    other = models["acme/other"]
    assert other["verdict"] == "incomplete" and "weights: model.safetensors" in other["details"]
    m3 = models["BAAI/bge-m3"]
    assert m3["verdict"] == "incomplete" and m3["match"] is None
    assert "head: colbert_linear.pt" in m3["details"] and any("curated manifest" in d for d in m3["details"])
    assert out["files_hashed"] == 0, "names and sizes only, like `hf cache ls`"
    with reg.catalog.reader() as session:
        ev = session.scalars(select(Event).where(Event.action == "audit.scan")).one()
        assert ev.details["verdicts"] == {"matches": 1, "incomplete": 2}

    # bad input, all at once: a stray partial download, a ref to a missing snapshot, a broken link, and a
    # blob whose bytes no longer match its name (same size)
    tiny_folder = snap.parents[1]
    (tiny_folder / "blobs" / ("c" * 64 + ".a1b2c3d4.incomplete")).write_bytes(b"half")
    (tiny_folder / "refs" / "v2").write_text("d" * 40)
    vocab_blob = (snap / "vocab.txt").resolve()
    os.unlink(vocab_blob)
    weights = (snap / "model.safetensors").resolve()
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.chmod(0o644)
    weights.write_bytes(bytes(data))
    (bge / "snapshots" / ("b" * 40) / "tokenizer.json").unlink()
    (bge / "snapshots" / ("b" * 40) / "tokenizer.json").symlink_to("/etc/passwd")
    r = cli("audit", "--scan", cache, "--json")
    assert r.exit_code == 1
    problems = {(Path(p["path"]).name, p["problem"].split(";")[0].split(" (")[0]) for p in r.json()["problems"]}
    assert ("c" * 64 + ".a1b2c3d4.incomplete", "a partial download") in problems
    assert ("v2", f"refs/v2 points at {'d' * 40}, whose snapshot is missing") in problems
    assert ("vocab.txt", f"a broken symlink: blob {vocab_blob.name} is missing") in problems
    assert any(name == "tokenizer.json" and "outside this repo's blobs" in text for name, text in problems)
    tiny = _by_repo(r)["acme/tiny"]
    assert tiny["verdict"] == "incomplete" and "tokenizer: vocab.txt (a broken link)" in tiny["details"]
    assert not any("does not match its content" in p["problem"] for p in r.json()["problems"]), "names trusted"

    deep = cli("audit", "--scan", cache, "--verify", "--json")
    mismatch = [p for p in deep.json()["problems"] if "does not match its content" in p["problem"]]
    assert [Path(p["path"]).name for p in mismatch] == [weights.name]
    tiny = _by_repo(deep)["acme/tiny"]
    assert tiny["verdict"] == "differs" and any(d.startswith("model.safetensors: ") for d in tiny["details"])
    assert deep.json()["files_hashed"] > 0
    # nothing was fixed: the stray file, the dangling ref and the broken link are all still there
    assert (tiny_folder / "refs" / "v2").exists() and not os.path.lexists(vocab_blob) and (snap / "vocab.txt").is_symlink()
    text = cli("audit", "--scan", cache)
    assert "problem" in text.stdout and "incomplete" in text.stdout and text.exit_code == 1


def test_a_folder_of_model_folders(cli, reg, tmp_path):
    folder = make_tiny_repo(tmp_path / "m", big=False)
    add_registered(reg, folder, "acme/tiny")
    root = tmp_path / "models"
    shutil.copytree(folder, root / "acme" / "tiny")
    shutil.copytree(folder, root / "team" / "tiny-edited")
    (root / "team" / "tiny-edited" / "vocab.txt").write_text("[PAD]\nhand edit\n")
    lora = root / "team" / "lora"
    write_json(lora / "adapter_config.json", {"peft_type": "LORA", "base_model_name_or_path": "acme/not-here",
                                              "r": 2, "target_modules": ["query"]})
    write_safetensors(lora / "adapter_model.safetensors", {"base_model.model.layer.0.lora_A.weight": ("F32", [2, 8])})
    (lora / "outside").symlink_to("/etc/hostname")
    (lora / "weights.bin.incomplete").write_bytes(b"x")
    (root / "team" / "linked").symlink_to(root / "acme")  # a symlinked folder: reported, not followed

    r = cli("audit", "--scan", root, "--json")
    assert r.exit_code == 1 and r.json()["layout"] == "folders"
    models = {Path(m["path"]).relative_to(root).as_posix(): m for m in r.json()["models"]}
    assert set(models) == {"acme/tiny", "team/tiny-edited", "team/lora"}
    assert models["acme/tiny"]["verdict"] == "matches" and models["acme/tiny"]["root_digest"] == _root_digest(reg, "acme/tiny")
    edited = models["team/tiny-edited"]
    assert edited["verdict"] == "differs" and edited["match"].startswith("acme/tiny@")
    assert [d.split(":")[0] for d in edited["details"] if not d.startswith("the same")] == ["vocab.txt"]
    lora_m = models["team/lora"]
    assert lora_m["verdict"] == "incomplete" and any(d.startswith("base: acme/not-here") for d in lora_m["details"])
    problems = {Path(p["path"]).name: p["problem"] for p in r.json()["problems"]}
    assert "outside the folder" in problems["outside"] and "partial download" in problems["weights.bin.incomplete"]
    assert "not followed" in problems["linked"]
    first_hashed = r.json()["files_hashed"]
    assert first_hashed > 0
    assert cli("audit", "--scan", root, "--json").json()["files_hashed"] == 0, "the stat cache remembers"
    # one model folder given directly
    single = cli("audit", "--scan", root / "acme" / "tiny", "--json")
    assert single.exit_code == 0 and [m["verdict"] for m in single.json()["models"]] == ["matches"]


def test_a_match_to_a_quarantined_model_is_a_finding(cli, reg, tmp_path):
    from tests.serve_helpers import set_state

    folder = make_tiny_repo(tmp_path / "m", big=False)
    add_registered(reg, folder, "acme/tiny")
    set_state(reg, "acme/tiny", "quarantined", "outputs differ")
    r = cli("audit", "--scan", folder, "--json")
    m = r.json()["models"][0]
    assert r.exit_code == 1 and m["verdict"] == "matches" and m["model_state"] == "quarantined"
    assert any("is quarantined" in d for d in m["details"])


def test_scan_bad_arguments(cli, tmp_path):
    assert cli("audit", "--scan", tmp_path / "nope").exit_code == 2
    (tmp_path / "file").write_text("x")
    r = cli("audit", "--scan", tmp_path / "file")
    assert r.exit_code == 2 and "not a folder" in r.stderr
    (tmp_path / "empty").mkdir()
    r = cli("audit", "--scan", tmp_path / "empty", "--json")
    assert r.exit_code == 0 and r.json()["models"] == []
    # an HF cache folder with garbage inside: reported, nothing raised
    junk = tmp_path / "cache" / "models--acme--junk"
    (junk / "snapshots" / "not-a-commit").mkdir(parents=True)
    (junk / "snapshots" / "not-a-commit" / "config.json").write_bytes(b"\xff\xfe not json")
    (junk / "blobs").mkdir()
    (junk / "blobs" / "README").write_text("?")
    (junk / "refs").mkdir()
    (junk / "refs" / "main").write_bytes(b"\x00\x01garbage")
    (tmp_path / "cache" / "models--").mkdir()
    r = cli("audit", "--scan", tmp_path / "cache", "--json")
    assert r.exit_code == 1 and "Traceback" not in r.stderr
    texts = " | ".join(p["problem"] for p in r.json()["problems"])
    assert "whose name is not a commit" in texts and "not a blob name" in texts and "does not hold a commit" in texts
    assert "not a models--ORG--NAME folder name" in texts


REPO_IDS = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._]{0,20}(/[A-Za-z0-9][A-Za-z0-9._]{0,20})?", fullmatch=True)


@given(REPO_IDS)
def test_cache_names_round_trip(repo_id):
    assert repo_id_from_cache_name(cache_folder_name(repo_id)) == repo_id


@given(st.text(max_size=60))
def test_cache_name_parser_takes_anything(name):
    got = repo_id_from_cache_name(name)
    assert got is None or (got and "--" not in got)
