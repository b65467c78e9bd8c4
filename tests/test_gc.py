import os

from tests.conftest import make_bert_like


def _unreferenced_blob(reg, tmp_path, content=b"orphan bytes"):
    src = tmp_path / "orphan.bin"
    src.write_bytes(content)
    return reg.store.ingest_file(src).digests.sha256


def test_gc_removes_only_old_unreferenced_blobs(reg, cli, tmp_path):
    assert cli("add", make_bert_like(tmp_path / "m"), "--name", "acme/tiny").exit_code == 0
    orphan = _unreferenced_blob(reg, tmp_path)
    referenced = {sha for sha, _ in reg.store.iter_blobs()} - {orphan}

    young = cli("gc", "--json").json()  # default grace: the orphan is too young to be garbage
    assert young["blobs_removed"] == [] and young["kept_young"] == 1

    dry = cli("gc", "--grace", "0", "--dry-run", "--json").json()
    assert dry["blobs_removed"] == [orphan] and reg.store.has(orphan)

    done = cli("gc", "--grace", "0", "--json").json()
    assert done["blobs_removed"] == [orphan] and done["bytes_freed"] == len(b"orphan bytes")
    assert not reg.store.has(orphan)
    assert {sha for sha, _ in reg.store.iter_blobs()} == referenced
    assert cli("verify").exit_code == 0


def test_gc_removes_stale_partial_downloads(reg, cli, tmp_path):
    w = reg.store.writer(expected_sha256="a" * 64, expected_size=10, resume=False)
    w.write(b"12345")
    w.abort(keep_partial=True)
    partial = reg.store.partial_path("a" * 64)
    assert partial.exists()
    old = partial.stat().st_mtime - 7200
    os.utime(partial, (old, old))
    result = cli("gc", "--json").json()
    assert result["stray_removed"] == [str(partial)] and not partial.exists()
    assert result["bytes_freed"] == 5


def test_gc_rejects_negative_grace(cli):
    r = cli("gc", "--grace", "-1")
    assert r.exit_code == 2


def test_gc_removes_half_built_link_folders_of_crashed_loads(reg, cli, tmp_path):
    dead = reg.settings.home / "materialized" / ".tmp-0123"
    (dead / "acme--tiny").mkdir(parents=True)
    (dead / "acme--tiny" / "config.json").symlink_to(tmp_path / "nowhere")
    live = reg.settings.home / "materialized" / ("a" * 64)
    live.mkdir()
    old = dead.stat().st_mtime - 7200
    os.utime(dead, (old, old))
    result = cli("gc", "--json").json()
    assert result["stray_removed"] == [str(dead)]
    assert not dead.exists() and live.exists()
