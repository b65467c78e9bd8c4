"""`registry verify`: a clean store exits 0; flipped bytes, truncation, zero fill and missing blobs exit 1
with a table naming the file, and quarantine the model; fast verify uses the stat cache."""

from __future__ import annotations

import os

import pytest

from tests.add_helpers import wait_for_ctime_tick
from tests.conftest import make_bert_like

REPORT_KEYS = {"ok", "deep", "models_checked", "files_checked", "blobs_checked", "blobs_hashed", "bytes_checked",
               "problems", "quarantined", "stray", "released", "notes"}
PROBLEM_KEYS = {"model", "repo", "path", "sha256", "problem", "reason"}


@pytest.fixture
def added(cli, tmp_path):
    """acme/tiny in the catalog; returns the store path of its model.safetensors blob."""
    r = cli("add", make_bert_like(tmp_path / "m", hidden=64), "--name", "acme/tiny", "--json")
    assert r.exit_code == 0, r.stderr
    shown = cli("show", "acme/tiny", "--json").json()
    sha = [f for c in shown["components"] for f in c["files"] if f["path"] == "model.safetensors"][0]["sha256"]
    from registry.config import Settings
    from registry.store import BlobStore

    return BlobStore(Settings.from_env().blobs_dir).path_for(sha)


def _damage(path, how: str) -> None:
    wait_for_ctime_tick(path, path.parent.parent.parent.parent / "tick")
    os.chmod(path, 0o644)
    data = bytearray(path.read_bytes())
    if how == "flip":
        data[len(data) // 2] ^= 0x01
    elif how == "zero":
        data[8:] = bytes(len(data) - 8)
    elif how == "truncate":
        data = data[:-100]
    st = path.stat()
    path.write_bytes(bytes(data))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))  # hide the change from mtime
    os.chmod(path, 0o444)


def test_a_clean_store(cli, added):
    for args in ((), ("--deep",), ("acme/tiny",)):
        r = cli("verify", *args)
        assert r.exit_code == 0, r.stdout + r.stderr
        assert "clean" in r.stdout
    r = cli("verify", "--json")
    report = r.json()
    assert set(report) == REPORT_KEYS
    assert report["ok"] is True and report["problems"] == [] and report["files_checked"] == 4
    assert report["blobs_hashed"] == 0  # fast: the stat cache proves every blob without hashing
    deep = cli("verify", "--deep", "--json").json()
    assert deep["deep"] is True and deep["blobs_hashed"] == deep["blobs_checked"] == 4


@pytest.mark.parametrize("how", ["flip", "zero", "truncate"])
def test_deep_verify_catches_corruption_and_quarantines(cli, added, how):
    _damage(added, how)
    r = cli("verify", "--deep")
    assert r.exit_code == 1
    lines = [line for line in r.stdout.splitlines() if "model.safetensors" in line]
    assert lines and lines[0].startswith("changed") and "acme/tiny" in lines[0]
    assert "quarantined: acme/tiny@" in r.stdout
    shown = cli("show", "acme/tiny", "--json").json()["summary"]
    assert shown["state"] == "quarantined" and "model.safetensors changed" in shown["state_reason"]
    assert cli("list", "--json").json()["models"][0]["state"] == "quarantined"
    j = cli("verify", "--deep", "--json")
    assert j.exit_code == 1
    [problem] = j.json()["problems"]
    assert set(problem) == PROBLEM_KEYS
    assert (problem["path"], problem["repo"], problem["problem"]) == ("model.safetensors", "acme/tiny", "changed")


def test_fast_verify_catches_truncation(cli, added):
    _damage(added, "truncate")
    r = cli("verify", "--json")
    assert r.exit_code == 1
    [problem] = r.json()["problems"]
    assert problem["problem"] == "changed" and problem["reason"].startswith("size is")
    assert r.json()["blobs_hashed"] == 0


def test_fast_verify_rehashes_a_blob_written_in_place(cli, added):
    _damage(added, "flip")  # same size, mtime restored: only ctime tells
    r = cli("verify", "--json")
    assert r.exit_code == 1 and r.json()["blobs_hashed"] == 1
    assert r.json()["problems"][0]["reason"].startswith("blake3 is")


def test_missing_blob(cli, added):
    os.unlink(added)
    r = cli("verify")
    assert r.exit_code == 1
    assert any(line.startswith("missing") and "model.safetensors" in line for line in r.stdout.splitlines())


def test_extra_blob_is_reported_but_quarantines_nothing(cli, added, tmp_path):
    from registry.config import Settings
    from registry.store import BlobStore

    stray = tmp_path / "stray.bin"
    stray.write_bytes(b"not in the catalog")
    stored = BlobStore(Settings.from_env().blobs_dir).ingest_file(stray)
    r = cli("verify", "--json")  # a young one is a leftover of an interrupted write: a note, not a problem
    assert r.exit_code == 0 and r.json()["problems"] == [] and "younger than gc's grace" in r.json()["notes"][0]
    old = stored.path.stat().st_mtime - 2 * 3600
    os.utime(stored.path, (old, old))
    r = cli("verify", "--json")
    assert r.exit_code == 1
    [problem] = r.json()["problems"]
    assert problem["problem"] == "extra" and problem["model"] is None
    assert r.json()["quarantined"] == []
    assert cli("verify", "acme/tiny").exit_code == 0  # naming models checks only theirs


def test_unknown_model(cli, added):
    r = cli("verify", "acme/nope")
    assert r.exit_code == 3 and "no model named 'acme/nope'" in r.stderr


def test_re_adding_repairs_a_quarantined_model(cli, added, tmp_path):
    _damage(added, "flip")
    assert cli("verify", "--deep").exit_code == 1
    r = cli("add", tmp_path / "m", "--name", "acme/tiny", "--json")
    assert r.exit_code == 0 and r.json()["state"] == "verified"
    assert cli("verify", "--deep").exit_code == 0


def test_verify_releases_a_model_whose_blobs_are_intact_again(cli, added, tmp_path):
    original = added.read_bytes()
    _damage(added, "flip")
    assert cli("verify", "--deep").exit_code == 1
    assert cli("show", "acme/tiny", "--json").json()["summary"]["state"] == "quarantined"
    os.chmod(added, 0o644)
    added.write_bytes(original)  # restored from a backup: the blob holds its bytes again
    os.chmod(added, 0o444)
    r = cli("verify", "--json")
    assert r.exit_code == 0 and r.json()["released"] == [r.json()["models_checked"][0]]
    summary = cli("show", "acme/tiny", "--json").json()["summary"]
    assert (summary["state"], summary["state_reason"]) == ("verified", None)
    assert "released" not in cli("verify").stdout  # once
