"""Hostile folders for ``registry add`` (issue 12, "Security"): a symlink or a hard link out of the folder,
``modules.json`` module paths that leave the repo, bad ``--revision`` names. Each is refused with exit 2 naming
the file, entry or ref, and nothing is recorded or stored; the legitimate look-alikes (an HF cache snapshot's
links into ../../blobs, two hard links inside the folder, a copy this registry deployed) still import."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from sqlalchemy import select

from registry.catalog.models import Ref, Repo

from registry.services.deploy import deploy
from tests.add_helpers import catalog_counts, make_hf_snapshot, store_files
from tests.conftest import write_json
from tests.serve_helpers import add_registered, make_tiny_repo

BAD_REFS = ["../../../x", "../../../../x", "a/../b", "/abs", "-rf", "a//b", "a/", "x.lock", "a/.hidden", "a.",
            "a@{1}", "@", "a b", "a~1", "a^", "a:b", "a?", "a*", "a[", "a\\b", "a\tb", "a\x00b", "x" * 300]


def _refused(r, code: int, *words: str) -> bool:
    return r.exit_code == code and "Traceback" not in r.stderr and all(w in r.stderr for w in words)


def _nothing_recorded(reg) -> bool:
    counts = catalog_counts(reg)
    return counts["models"] == 0 and counts["files"] == 0 and store_files(reg) == []


@pytest.fixture
def model(tmp_path) -> Path:
    return make_tiny_repo(tmp_path / "model", big=False)


def test_hostile_folders_are_refused_and_lookalikes_import(cli, reg, tmp_path, model, trials):
    t = trials("hostile: folder")
    outside = tmp_path / "outside-secret.bin"
    outside.write_bytes(b"the bytes of someone else's file" * 100)

    def case(name: str, folder: Path, code: int, *words: str, args: tuple[str, ...] = ()) -> None:
        r = cli("add", folder, "--name", "acme/hostile", *args)
        ok = _refused(r, code, *words) and _nothing_recorded(reg)
        t.record(name, ok)
        assert ok, (name, r.exit_code, r.stderr[-2000:])

    # a symlink out of the folder (the existing rule the hard-link rule matches)
    f = shutil.copytree(model, tmp_path / "symlink-out")
    (f / "extra.json").symlink_to(outside)
    case("symlink out of the folder", f, 2, "extra.json", "outside the model folder")

    # hard links out of the folder: a selected weight, a selected config, in a subfolder
    for rel in ("model.safetensors", "config.json", "1_Pooling/config.json"):
        f = tmp_path / f"hardlink-out-{rel.replace('/', '_')}"
        shutil.copytree(model, f)
        stolen = tmp_path / f"stolen-{rel.replace('/', '_')}"
        shutil.copyfile(f / rel, stolen)  # same bytes as the model needs, but the inode is someone else's file
        (f / rel).unlink()
        os.link(stolen, f / rel)
        case(f"hard link out: {rel}", f, 2, rel.rsplit("/", 1)[-1], "hard link", "outside the model folder")

    # modules.json naming module folders that leave the repo
    for i, bad in enumerate(["../../etc", "/etc", "..", "1_Pooling/../../x", "/abs/", "a\\..\\b"]):
        f = shutil.copytree(model, tmp_path / f"modules-{i}")
        write_json(f / "modules.json", [{"idx": 0, "name": "0", "path": "", "type": "x.Transformer"},
                                        {"idx": 1, "name": "1", "path": bad, "type": "x.Pooling"}])
        case(f"modules.json path {bad!r}", f, 2, "modules.json", "[1].path")

    # --revision names that are no ref
    for bad in BAD_REFS:
        case(f"--revision {bad!r}", model, 2, "--revision", "not a valid ref name", args=("--revision", bad))

    assert t.escaped == []


def test_lookalikes_still_import(cli, reg, tmp_path, model, trials):
    t = trials("hostile: folder")

    def ok(name: str, folder: Path, repo: str, *args: str) -> None:
        r = cli("add", folder, "--name", repo, *args)
        t.record(name, r.exit_code == 0)
        assert r.exit_code == 0, (name, r.stderr[-2000:])

    # two hard links of one file, both inside the folder
    f = shutil.copytree(model, tmp_path / "links-inside")
    shutil.copyfile(f / "config.json", f / "spare-config.json")
    (f / "config.json").unlink()
    os.link(f / "spare-config.json", f / "config.json")
    ok("two hard links inside the folder", f, "acme/inside")

    # an HF cache snapshot: symlinks into ../../blobs, and a cache file under refs/ that is no ref name
    snap = make_hf_snapshot(model, tmp_path / "cache", "acme/snap", "c" * 40, refs=("main", "v1..2"))
    ok("HF cache snapshot (links into ../../blobs)", snap, "acme/snap")
    with reg.catalog.reader() as session:
        refs = session.scalars(select(Ref.name).join(Repo, Ref.repo_id == Repo.id)
                               .where(Repo.repo_id == "acme/snap")).all()
    assert refs == ["main"]  # the cache's `v1..2` file is no ref name: not a label

    # a copy this registry deployed: its files are hard links of the store's own blobs
    add_registered(reg, model, "acme/deployed")
    done = deploy(reg, "acme/deployed", tmp_path / "deployed", layout="dir")
    ok("a deployed copy (hard links of this store's blobs)", Path(done.path), "acme/redeployed")
    assert t.escaped == []


def test_ref_names_refused_on_pull_before_any_request(cli, reg):
    for bad in ("../../../x", "main/../../x", "-x", "a..b"):
        r = cli("pull", "acme/m", "--revision", bad, "--endpoint", "http://127.0.0.1:9")
        assert r.exit_code == 2 and "not a valid ref name" in r.stderr and bad in r.stderr, r.stderr
    assert catalog_counts(reg)["models"] == 0
