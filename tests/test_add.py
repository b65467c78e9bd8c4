"""`registry add`: every bad input is refused with a clear error and exit code, and leaves no partial
catalog rows and no blobs; good folders (plain, HF cache snapshot, adapter over a base) are verified."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from registry.services.add import add_folder
from tests.add_helpers import catalog_counts, make_adapter, make_hf_snapshot, store_files
from tests.conftest import make_bert_like, write_json, write_safetensors

EMPTY = {"repos": 0, "revisions": 0, "blobs": 0, "files": 0, "models": 0, "components": 0, "lineage": 0}


@pytest.fixture
def refused(cli, reg):
    """Run ``registry add ARGS --json``; assert the exit code and that nothing was recorded or stored."""
    def run(*args, code: int, before: dict[str, int] | None = None):
        blobs_before = store_files(reg)
        r = cli("add", *args, "--json")
        assert r.exit_code == code, (r.stdout, r.stderr)
        assert catalog_counts(reg) == (before or EMPTY)
        assert store_files(reg) == blobs_before  # no new blob, no temp or partial file
        assert "Traceback" not in r.stderr
        err = r.json()
        assert err["exit_code"] == code and err["message"] in r.stderr
        return err
    return run


def test_path_does_not_exist(refused, tmp_path):
    err = refused(tmp_path / "nope", "--name", "acme/x", code=2)
    assert "no such folder" in err["message"] and err["error"] == "InvalidPath"


def test_a_file_instead_of_a_folder(refused, tmp_path):
    f = tmp_path / "model.safetensors"
    f.write_bytes(b"x")
    assert "not a folder" in refused(f, "--name", "acme/x", code=2)["message"]


def test_not_a_model_folder(refused, tmp_path):
    (tmp_path / "m").mkdir()
    assert "the folder is empty" in refused(tmp_path / "m", "--name", "acme/x", code=2)["message"]
    (tmp_path / "m" / "README.md").write_text("hello")
    (tmp_path / "m" / "notes.txt").write_text("hello")
    assert "is this a model folder" in refused(tmp_path / "m", "--name", "acme/x", code=2)["message"]


def test_broken_symlink_fifo_and_garbled_json(refused, tmp_path):
    folder = make_bert_like(tmp_path / "m")
    (folder / "gone.json").symlink_to(folder / "nowhere.json")
    assert "broken symlink" in refused(folder, "--name", "acme/x", code=2)["message"]
    (folder / "gone.json").unlink()
    os.mkfifo(folder / "pipe")
    assert "not a regular file" in refused(folder, "--name", "acme/x", code=2)["message"]
    (folder / "pipe").unlink()
    (folder / "config.json").write_text('{"model_type": ')
    err = refused(folder, "--name", "acme/x", code=2)
    assert "config.json: not valid JSON" in err["message"]


def test_bad_name(refused, tmp_path):
    folder = make_bert_like(tmp_path / "m")
    assert "not a repo id" in refused(folder, "--name", "../etc", code=2)["message"]


@pytest.mark.parametrize("target", ["absolute", "../secret.txt"])
def test_symlink_pointing_out_of_the_folder(refused, tmp_path, target):
    folder = make_bert_like(tmp_path / "m")
    (tmp_path / "secret.txt").write_text("secret")
    (folder / "extra.txt").symlink_to(tmp_path / "secret.txt" if target == "absolute" else target)
    err = refused(folder, "--name", "acme/x", code=2)
    assert "symlink points outside the model folder" in err["message"] and "extra.txt" in err["message"]


def test_symlinked_subfolder(refused, tmp_path):
    folder = make_bert_like(tmp_path / "m")
    (tmp_path / "elsewhere").mkdir()
    (folder / "1_Pooling").symlink_to(tmp_path / "elsewhere")
    assert "a symlinked folder" in refused(folder, "--name", "acme/x", code=2)["message"]


@pytest.mark.parametrize("name, words", [("sub\\..\\x.json", "backslash"), ("x\ny.json", "control characters")])
def test_file_name_with_a_backslash_or_a_newline(refused, tmp_path, name, words):
    folder = make_bert_like(tmp_path / "m")
    (folder / name).write_text("{}")
    err = refused(folder, "--name", "acme/x", code=2)
    assert "unusable file name" in err["message"] and words in err["message"]


def test_garbled_manifest(refused, tmp_path):
    folder = make_bert_like(tmp_path / "m")
    bad = tmp_path / "bad.toml"
    bad.write_text('name = "acme/x"\nfamily = "transformers"\n[[component]]\nrole = "weights"\nfiles = 7\n')
    err = refused(folder, "--name", "acme/x", "--manifest", bad, code=2)
    assert err["error"] == "ManifestError"
    assert str(bad) in err["message"] and "component[0].files" in err["message"]
    bad.write_text('name = "acme/x"\nfamily = "transformers\n')
    err = refused(folder, "--name", "acme/x", "--manifest", bad, code=2)
    assert str(bad) in err["message"] and "not valid TOML" in err["message"]


def test_manifest_for_another_model(refused, tmp_path):
    folder = make_bert_like(tmp_path / "m")
    other = tmp_path / "other.toml"
    other.write_text('name = "acme/other"\nfamily = "transformers"\n[[component]]\nrole = "weights"\n'
                     'files = ["model.safetensors"]\n')
    assert "is for 'acme/other', not 'acme/x'" in refused(folder, "--name", "acme/x", "--manifest", other, code=2)["message"]


def test_truncated_safetensors(refused, reg, tmp_path):
    folder = make_bert_like(tmp_path / "m")
    weights = folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-7])
    err = refused(folder, "--name", "acme/x", code=5)
    assert err["error"] == "FormatError" and "model.safetensors: truncated" in err["message"]
    from sqlalchemy import select

    from registry.catalog.models import Event

    with reg.catalog.reader() as session:  # the refusal itself is on the record
        [event] = session.scalars(select(Event).where(Event.action == "add.refused")).all()
    assert event.subject == "acme/x" and "truncated" in event.details["format"]


def test_index_naming_a_missing_shard(refused, tmp_path):
    folder = make_bert_like(tmp_path / "m", shards=2)
    (folder / "model-00002-of-00002.safetensors").unlink()
    err = refused(folder, "--name", "acme/x", code=4)
    assert err["error"] == "IncompleteModel"
    assert err["details"]["missing"] == ["weights: model-00002-of-00002.safetensors"]
    assert "weights: model-00002-of-00002.safetensors" in err["message"]


def test_a_shard_the_index_does_not_name(refused, tmp_path, reg):
    folder = make_bert_like(tmp_path / "m", shards=2)
    manifest = tmp_path / "x.toml"  # a manifest that takes every shard present, so the index check sees it
    manifest.write_text('name = "acme/x"\nfamily = "transformers"\n[[component]]\nrole = "weights"\n'
                        'patterns = ["model*"]\n')
    write_safetensors(folder / "model-00003-of-00003.safetensors", {"x": ("F32", [2])})
    err = refused(folder, "--name", "acme/x", "--manifest", manifest, code=5)
    assert "does not name these shards beside it: model-00003-of-00003.safetensors" in err["message"]


def _pinned_manifest(tmp_path: Path, folder: Path, *, sha: str | None = None, size: int | None = None) -> Path:
    data = (folder / "model.safetensors").read_bytes()
    sha = sha or hashlib.sha256(data).hexdigest()
    size = len(data) if size is None else size
    path = tmp_path / "pinned.toml"
    path.write_text(f'name = "acme/x"\nfamily = "transformers"\n'
                    f'[[component]]\nrole = "config"\nfiles = [{{ path = "config.json" }}]\n'
                    f'[[component]]\nrole = "weights"\n'
                    f'files = [{{ path = "model.safetensors", size = {size}, sha256 = "{sha}" }}]\n')
    return path


def test_pinned_sha256_does_not_match(refused, tmp_path):
    folder = make_bert_like(tmp_path / "m")
    err = refused(folder, "--name", "acme/x", "--manifest", _pinned_manifest(tmp_path, folder, sha="0" * 64), code=5)
    assert err["error"] == "IntegrityError"
    assert "weights: model.safetensors: sha256 is" in err["message"] and "0" * 64 in err["message"]


def test_pinned_size_does_not_match(refused, tmp_path):
    folder = make_bert_like(tmp_path / "m")
    err = refused(folder, "--name", "acme/x", "--manifest", _pinned_manifest(tmp_path, folder, size=1), code=5)
    assert "weights: model.safetensors: size is" in err["message"] and "the manifest expects 1" in err["message"]


def test_manifest_file_missing_from_the_folder(refused, tmp_path):
    folder = make_bert_like(tmp_path / "m")
    manifest = _pinned_manifest(tmp_path, folder)
    (folder / "config.json").unlink()
    err = refused(folder, "--name", "acme/x", "--manifest", manifest, code=4)
    assert err["details"]["missing"] == ["config: config.json"]


def test_adapter_whose_base_is_not_in_the_catalog(refused, tmp_path):
    folder = make_adapter(tmp_path / "a", "acme/base")
    err = refused(folder, "--name", "acme/adapter", code=4)
    assert err["details"]["missing"] == ["base: acme/base (not in the catalog: `registry pull` or `registry add` it first)"]
    assert "base: acme/base" in err["message"]


def test_a_refusal_after_good_adds_leaves_those_untouched(refused, cli, reg, tmp_path):
    assert cli("add", make_bert_like(tmp_path / "good"), "--name", "acme/good").exit_code == 0
    before, blobs = catalog_counts(reg), store_files(reg)
    folder = make_bert_like(tmp_path / "m", seed=9)
    err = refused(folder, "--name", "acme/x", "--manifest", _pinned_manifest(tmp_path, folder, sha="0" * 64),
                  code=5, before=before)
    assert store_files(reg) == blobs and err["error"] == "IntegrityError"
    assert cli("verify").exit_code == 0


# ---- good paths ----------------------------------------------------------------------------------

def _git_hash_object(path: Path) -> str:
    return subprocess.run(["git", "hash-object", "--no-filters", str(path)], check=True, capture_output=True,
                          text=True).stdout.strip()


def test_plain_folder(cli, reg, tmp_path):
    folder = make_bert_like(tmp_path / "m", shards=2)
    (folder / "README.md").write_text("# tiny\n")
    r = cli("add", folder, "--name", "acme/tiny", "--revision", "v1", "--json")
    assert r.exit_code == 0, r.stderr
    added = r.json()
    assert added["state"] == "verified" and added["inferred"] is True and added["revision"] == "v1"
    assert added["files"] == 6 and added["new_blobs"] == 6  # README.md is not part of the model
    shown = cli("show", "acme/tiny@v1", "--json").json()
    files = {f["path"]: f for c in shown["components"] for f in c["files"]}
    assert files["model-00001-of-00002.safetensors"]["lfs"] is True
    assert files["config.json"]["lfs"] is False
    if shutil.which("git"):
        assert files["config.json"]["git_oid"] == _git_hash_object(folder / "config.json")
    assert shown["summary"]["refs"] == ["v1"] and shown["summary"]["state"] == "verified"
    assert catalog_counts(reg)["blobs"] == 6


def test_re_adding_the_same_folder_is_idempotent(cli, reg, tmp_path):
    folder = make_bert_like(tmp_path / "m")
    first = cli("add", folder, "--name", "acme/tiny", "--json").json()
    counts = catalog_counts(reg)
    blob = reg.store.path_for(cli("show", "acme/tiny", "--json").json()["components"][0]["files"][0]["sha256"])
    st = blob.stat()
    again = cli("add", folder, "--name", "acme/tiny", "--json").json()
    assert again["commit"] == first["commit"] and again["root_digest"] == first["root_digest"]
    assert again["new_blobs"] == 0 and catalog_counts(reg) == counts
    assert (blob.stat().st_ino, blob.stat().st_mtime_ns) == (st.st_ino, st.st_mtime_ns)
    # different bytes under the same name: a new revision, and main moves to it
    make_bert_like(folder, seed=5)
    third = cli("add", folder, "--name", "acme/tiny", "--json").json()
    assert third["commit"] != first["commit"]
    assert cli("show", "acme/tiny", "--json").json()["summary"]["commit"] == third["commit"]
    assert len(cli("list", "--json").json()["models"]) == 2


def test_hf_cache_snapshot_folder(cli, tmp_path):
    source = make_bert_like(tmp_path / "src")
    write_json(source / "1_Pooling" / "config.json", {"pooling_mode_mean_tokens": True})
    commit = "1" * 40
    snap = make_hf_snapshot(source, tmp_path / "hub", "acme/tiny", commit, refs=("main", "refs/pr/1"))
    r = cli("add", snap, "--name", "acme/tiny", "--json")
    assert r.exit_code == 0, r.stderr
    added = r.json()
    assert added["commit"] == commit and added["state"] == "verified"
    assert added["revision"] == "main,refs/pr/1"
    shown = cli("show", f"acme/tiny@{commit[:8]}", "--json").json()
    files = {f["path"]: f for c in shown["components"] for f in c["files"]}
    # the cache's etags are the Hub's oids: sha256 for LFS files, git blob sha1 for the rest
    assert files["model.safetensors"]["lfs"] is True
    assert files["config.json"]["git_oid"] == os.path.basename(os.readlink(snap / "config.json"))


def test_hf_cache_repo_folder_means_its_main_snapshot(cli, refused, tmp_path):
    source = make_bert_like(tmp_path / "src")
    snap = make_hf_snapshot(source, tmp_path / "hub", "acme/tiny", "3" * 40)
    repo_dir = snap.parent.parent
    (repo_dir / "refs" / "main").unlink()
    err = refused(repo_dir, "--name", "acme/tiny", code=2)
    assert "HF cache repo folder" in err["message"] and str(snap) in err["message"]
    (repo_dir / "refs" / "main").write_text("3" * 40)
    r = cli("add", repo_dir, "--name", "acme/tiny", "--json")
    assert r.exit_code == 0 and r.json()["commit"] == "3" * 40


def test_hf_cache_snapshot_with_a_corrupt_blob(refused, tmp_path):
    source = make_bert_like(tmp_path / "src")
    snap = make_hf_snapshot(source, tmp_path / "hub", "acme/tiny", "2" * 40)
    target = (snap / "config.json").resolve()
    target.write_text(target.read_text().replace("bert", "BERT"))  # same size, different bytes
    err = refused(snap, "--name", "acme/tiny", code=5)
    assert "config.json: the HF cache names it blobs/" in err["message"] and "corrupt" in err["message"]


def test_adapter_then_base_in_order_gives_lineage(cli, tmp_path):
    assert cli("add", make_bert_like(tmp_path / "base"), "--name", "acme/base").exit_code == 0
    r = cli("add", make_adapter(tmp_path / "a", "acme/base"), "--name", "acme/adapter", "--json")
    assert r.exit_code == 0, r.stderr
    added = r.json()
    assert added["family"] == "peft" and added["state"] == "verified"
    roles = {c["role"]: c for c in added["components"]}
    assert roles["base"]["repo"] == "acme/base" and roles["adapter"]["repo"] == "acme/adapter"
    shown = cli("show", "acme/adapter", "--json").json()
    base_commit = cli("show", "acme/base", "--json").json()["summary"]["commit"]
    assert shown["lineage"] == [{"relation": "base", "repo": "acme/base", "commit": base_commit, "pinned": False,
                                 "model_state": "verified"}]
    text = cli("show", "acme/adapter").stdout
    assert "lineage:" in text and "base: acme/base@" in text


def test_adapter_whose_base_blob_vanished(cli, reg, tmp_path):
    assert cli("add", make_bert_like(tmp_path / "base"), "--name", "acme/base").exit_code == 0
    weights = [f for c in cli("show", "acme/base", "--json").json()["components"] for f in c["files"]
               if f["path"] == "model.safetensors"][0]
    reg.store.remove(weights["sha256"])
    r = cli("add", make_adapter(tmp_path / "a", "acme/base"), "--name", "acme/adapter", "--json")
    assert r.exit_code == 4
    assert r.json()["details"]["missing"][0].startswith("base: acme/base/model.safetensors (missing in the store")


class Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple] = []

    def begin(self, total_bytes: int, files: int) -> None:
        self.calls.append(("begin", total_bytes, files))

    def file_begin(self, key: str, name: str, size: int, offset: int) -> None:
        self.calls.append(("file_begin", name, size))

    def advance(self, key: str, n: int) -> None:
        self.calls.append(("advance", key, n))

    def file_end(self, key: str) -> None:
        self.calls.append(("file_end", key))

    def end(self) -> None:
        self.calls.append(("end",))


def test_add_reports_progress(reg, tmp_path):
    folder = make_bert_like(tmp_path / "m")
    rec = Recorder()
    result = add_folder(reg, folder, "acme/tiny", progress=rec)
    assert rec.calls[0] == ("begin", result.bytes, result.files) and rec.calls[-1] == ("end",)
    assert sum(c[2] for c in rec.calls if c[0] == "advance") == result.bytes
    assert {c[1] for c in rec.calls if c[0] == "file_begin"} == {"config.json", "model.safetensors",
                                                                  "tokenizer_config.json", "vocab.txt"}


def test_no_progress_output_when_stderr_is_not_a_terminal(cli, tmp_path):
    r = cli("add", make_bert_like(tmp_path / "m"), "--name", "acme/tiny", "--no-smoke")
    assert r.exit_code == 0
    assert "acme/tiny@" in r.stdout and "verified" in r.stdout
    # stderr holds only the registration's one line, no progress bar
    assert r.stderr.splitlines() == [line for line in r.stderr.splitlines() if "left verified (--no-smoke)" in line]
    assert len(r.stderr.splitlines()) == 1


def _add_in_a_process(folder: str) -> str:
    from registry.config import Settings
    from registry.services.context import Registry

    reg = Registry.open(Settings.from_env())
    try:
        return add_folder(reg, folder, "acme/tiny").commit
    finally:
        reg.close()


def test_concurrent_adds_of_the_same_folder_converge(reg, tmp_path):
    import multiprocessing

    folder = make_bert_like(tmp_path / "m", shards=2)
    with multiprocessing.get_context("spawn").Pool(3) as pool:
        commits = pool.map(_add_in_a_process, [str(folder)] * 3)
    assert len(set(commits)) == 1
    counts = catalog_counts(reg)
    assert counts["models"] == 1 and counts["revisions"] == 1 and counts["blobs"] == 6
    assert [s for s in store_files(reg) if "/" in s] == []  # no temp or partial file left


@pytest.mark.ml
def test_add_ends_with_the_smoke_registration(cli, minilm_dir, monkeypatch):
    monkeypatch.setenv("REGISTRY_SMOKE", "1")
    r = cli("add", minilm_dir, "--name", "sentence-transformers/all-MiniLM-L6-v2", "--device", "cpu", "--json")
    assert r.exit_code == 0, r.stderr
    out = r.json()
    assert out["state"] == "registered" and out["registration"]["smoke"]["passed"] is True
    shown = cli("show", "sentence-transformers/all-MiniLM-L6-v2", "--json").json()
    assert shown["summary"]["state"] == "registered" and shown["smoke_runs"][0]["fingerprint"]
