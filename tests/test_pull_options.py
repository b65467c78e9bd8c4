"""`registry pull` with the habits of `hf download`: --local-dir, --include/--exclude, --max-workers."""

from __future__ import annotations

import pytest

from registry.hashing import hash_file
from tests.pull_helpers import ADAPTER, BASE, SHARDED, catalog_counts, dump, hub, store_files  # noqa: F401

pytestmark = pytest.mark.hubclient


def test_local_dir_ends_with_a_plain_folder_of_the_model(cli, reg, hub, tmp_path):
    out_dir = tmp_path / "plain"
    r = cli("pull", SHARDED, "--endpoint", hub.url, "--local-dir", out_dir, "--json")
    assert r.exit_code == 0, dump(r)
    out = r.json()
    files = sorted(p.relative_to(out_dir).as_posix() for p in out_dir.rglob("*") if p.is_file())
    assert files == sorted(f["path"] for c in cli("show", SHARDED, "--json").json()["components"] for f in c["files"])
    for rel in files:  # every byte as published
        assert hash_file(out_dir / rel).sha256 == hub.file(SHARDED, rel).sha256
    assert not any(p.is_symlink() for p in out_dir.rglob("*"))
    assert out["local_dir"]["path"] == str(out_dir) and out["local_dir"]["layout"] == "dir"
    assert "wrote " in r.stderr and "recorded as deployment" in r.stderr


def test_local_dir_that_is_not_empty_is_refused_before_any_download(cli, reg, hub, tmp_path):
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "mine.txt").write_text("keep me")
    r = cli("pull", SHARDED, "--endpoint", hub.url, "--local-dir", busy)
    assert r.exit_code == 2 and "not an empty folder" in r.stderr
    assert [p.name for p in busy.iterdir()] == ["mine.txt"]
    assert catalog_counts(reg)["models"] == 0 and store_files(reg) == []
    assert not [req for req in hub.requests if "/resolve/" in req[1]]


def test_include_adds_optional_files_and_exclude_drops_them(cli, reg, hub):
    r = cli("pull", BASE, "--endpoint", hub.url, "--include", "*.md", "--json")
    assert r.exit_code == 0, dump(r)
    shown = cli("show", BASE, "--json").json()
    by_path = {f["path"]: c for c in shown["components"] for f in c["files"]}
    assert by_path["README.md"]["required"] is False and by_path["README.md"]["role"] == "config"
    assert "README.md" not in r.json()["ignored"]
    again = cli("pull", BASE, "--endpoint", hub.url, "--exclude", "*.md", "--json")
    assert again.exit_code == 0, dump(again)
    assert "README.md" in again.json()["ignored"]


def test_exclude_of_a_required_file_is_refused_naming_it(cli, reg, hub):
    r = cli("pull", SHARDED, "--endpoint", hub.url, "--exclude", "model-00002-*")
    assert r.exit_code == 2
    assert "model-00002-of-00002.safetensors" in r.stderr and "requires" in r.stderr
    assert catalog_counts(reg)["models"] == 0
    # only the small JSON files the manifest was read from were fetched (proven bytes; gc drops them): no weights
    for shard in ("model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"):
        assert not reg.store.has(hub.file(SHARDED, shard).sha256)


def test_include_that_matches_nothing_and_bad_worker_counts_are_refused(cli, reg, hub):
    r = cli("pull", BASE, "--endpoint", hub.url, "--include", "no-such-*")
    assert r.exit_code == 2 and "matches no file" in r.stderr
    assert cli("pull", BASE, "--endpoint", hub.url, "--max-workers", "0").exit_code == 2
    assert catalog_counts(reg)["models"] == 0


def test_max_workers_one_downloads_the_same_model(cli, reg, hub):
    r = cli("pull", SHARDED, "--endpoint", hub.url, "--max-workers", "1", "--json")
    assert r.exit_code == 0, dump(r)
    assert cli("verify", "--deep").exit_code == 0


def test_oci_references_refuse_hub_only_options(cli, tmp_path):
    r = cli("pull", "oci://127.0.0.1:5/x/y:1", "--local-dir", tmp_path / "d")
    assert r.exit_code == 2 and "--local_dir" in r.stderr or "--local-dir" in r.stderr
