"""Corruption of the store and of deployed copies (both layouts): flip a byte, truncate, zero-fill a range, swap two
same-size files' contents, delete, add a file, rename a file (and, in an HF cache, a rewritten or deleted
refs/main). ``registry verify`` / ``registry audit --verify`` (the stat-cache path) and their ``--deep`` variants must
each catch every case, exit 1, naming the file and the problem; then the repair (``add`` again and ``gc`` for the
store, a re-deploy for a copy) must leave them clean. In-place writes keep the inode and put the mtime back, which is
the hardest case for a stat cache (only ctime moves). docs/reliability.md, "Deployments: damage, repair and re-runs"."""

from __future__ import annotations

import os
import time
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import select

from registry.catalog.models import Event, Model
from registry.hashing import sha256_file
from tests.conftest import make_bert_like
from tests.serve_helpers import add_registered

REPO = "acme/sharded"
SHARD1, SHARD2 = "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"
SHM = Path("/dev/shm")

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


def _model(folder: Path) -> Path:
    make_bert_like(folder, shards=2)
    assert (folder / SHARD1).stat().st_size == (folder / SHARD2).stat().st_size  # the same-size swap needs it
    return folder


def _age(path: Path) -> None:
    old = time.time() - 7200
    os.utime(path, (old, old))


def _in_place(path: Path, change: Callable[[bytearray], None]) -> None:
    """Rewrite ``path`` in place (same inode), then put its mtime back."""
    st = os.stat(path)
    data = bytearray(path.read_bytes())
    change(data)
    with open(path, "r+b") as f:
        f.write(bytes(data))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


def _rewrite(path: Path, change: Callable[[bytearray], None]) -> None:
    """As an editor writes: a new file under the old name (the store's hard-linked inode is not touched)."""
    data = bytearray(path.read_bytes())
    change(data)
    path.unlink()
    path.write_bytes(bytes(data))


def _flip(data: bytearray) -> None:
    data[len(data) // 2] ^= 0x40


def _zero(data: bytearray) -> None:
    n = len(data)
    data[n // 3: n // 3 + 16] = bytes(16) if any(data[n // 3: n // 3 + 16]) else b"\xff" * 16


def _swap(a: Path, b: Path, write: Callable[[Path, Callable[[bytearray], None]], None]) -> None:
    da, db = a.read_bytes(), b.read_bytes()
    write(a, lambda d: d.__setitem__(slice(None), db))
    write(b, lambda d: d.__setitem__(slice(None), da))


def _truncate(path: Path) -> None:
    os.truncate(path, path.stat().st_size // 2)


# ---- the store ------------------------------------------------------------------------------------------------

def test_store_corruption_is_caught_and_repaired(trials, reg, cli, tmp_path):
    folder = _model(tmp_path / "m")
    add_registered(reg, folder, REPO)
    t = trials("corruption: store")
    blob = {rel: reg.store.path_for(sha256_file(folder / rel)) for rel in (SHARD1, SHARD2)}
    one = blob[SHARD1]
    stray = reg.store.path_for("ab" * 32)  # where a blob of that name lives (gc removes only those)
    moved = reg.store.path_for("cd" * 32)

    def add_file() -> None:
        stray.parent.mkdir(parents=True, exist_ok=True)
        stray.write_bytes(b"bytes nobody recorded")
        _age(stray)  # past gc's grace: a young unreferenced blob is only a note (a pull may be writing it)

    def rename() -> None:
        moved.parent.mkdir(parents=True, exist_ok=True)
        os.rename(one, moved)
        _age(moved)

    cases: dict[str, tuple[Callable[[], None], set[tuple[str, str]]]] = {
        "flip a byte": (lambda: _in_place(one, _flip), {(SHARD1, "changed")}),
        "truncate": (lambda: _truncate(one), {(SHARD1, "changed")}),
        "zero-fill a range": (lambda: _in_place(one, _zero), {(SHARD1, "changed")}),
        "same-size swap": (lambda: _swap(blob[SHARD1], blob[SHARD2], _in_place),
                           {(SHARD1, "changed"), (SHARD2, "changed")}),
        "delete": (lambda: one.unlink(), {(SHARD1, "missing")}),
        "add a file": (add_file, {(stray.name, "extra")}),
        "rename": (rename, {(SHARD1, "missing"), (moved.name, "extra")}),
    }
    assert cli("verify").exit_code == 0  # the stat cache holds every blob as proven
    for name, (damage, expected) in cases.items():
        damage()
        for mode in ("fast", "deep"):
            r = cli("verify", *(["--deep"] if mode == "deep" else []), "--json")
            found = {(p["path"] or p["sha256"], p["problem"]) for p in r.json()["problems"]}
            t.record(f"{name}: {mode} ({sorted(found)})", r.exit_code == 1 and found == expected)
        # the repair: proven bytes again (add lifts the blob-caused quarantine), gc for what nobody references
        added = cli("add", folder, "--name", REPO)
        swept = cli("gc", "--grace", "0")
        clean = cli("verify", "--deep", "--json")
        with reg.catalog.reader() as session:
            state = session.scalars(select(Model.state).where(Model.name == REPO)).one()
        t.record(f"{name}: repaired ({added.stderr[-200:]}{swept.stderr[-200:]}, {state})",
                 added.exit_code == 0 and swept.exit_code == 0 and clean.exit_code == 0 and state in ("verified", "registered"))
        add_registered(reg, folder, REPO)  # back to registered (the smoke proof is tested elsewhere)
    assert t.escaped == []


# ---- deployed copies ------------------------------------------------------------------------------------------

def _copy_root(tmp_path: Path) -> tuple[Path, bool]:
    """Where the copy goes, and whether it is a real copy (another filesystem: in-place writes leave the store be)."""
    if SHM.is_dir() and os.access(SHM, os.W_OK) and os.stat(SHM).st_dev != os.stat(tmp_path).st_dev:
        return SHM / f"registry-corruption-{os.getpid()}-{tmp_path.name}", True
    return tmp_path / "deployed", False


def _drift_names(row: dict) -> list[str]:
    d = row["drift"]
    return [f"changed {x}" for x in d["changed"]] + [f"missing {x}" for x in d["missing"]] + \
        [f"extra {x}" for x in d["extra"]]


@pytest.mark.parametrize("layout", ["dir", "hf-cache"])
def test_deployment_corruption_is_caught_and_repaired_by_a_redeploy(trials, reg, cli, tmp_path, layout):
    folder = _model(tmp_path / "m")
    add_registered(reg, folder, REPO)
    model = {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()}
    root, copied = _copy_root(tmp_path)
    write = _in_place if copied else _rewrite
    t = trials(f"corruption: deployment ({layout})")
    try:
        r = cli("deploy", REPO, "--target", root, "--layout", layout, "--json")
        assert r.exit_code == 0, r.stderr
        path = Path(r.json()["path"])
        repo_folder = path.parents[1] if layout == "hf-cache" else None

        def content(rel: str) -> Path:  # the file holding the bytes: the blob an HF snapshot links to
            p = path / rel
            return p.resolve() if layout == "hf-cache" else p

        def add_files() -> None:
            (path / "pytorch_model.bin").write_bytes(model[SHARD1])
            (path / "added_tokens.json").write_text('{"<evil>": 30522}')

        cases: dict[str, tuple[Callable[[], None], list[str]]] = {
            "flip a byte": (lambda: write(content(SHARD1), _flip), [f"changed {SHARD1} (content differs)"]),
            "truncate": (lambda: _truncate(content(SHARD1)), [f"changed {SHARD1} (size "]),
            "zero-fill a range": (lambda: write(content(SHARD1), _zero), [f"changed {SHARD1} (content differs)"]),
            "same-size swap": (lambda: _swap(content(SHARD1), content(SHARD2), write),
                               [f"changed {SHARD1} (content differs)", f"changed {SHARD2} (content differs)"]),
            "delete": (lambda: (path / "config.json").unlink(), ["missing config.json"]),
            "add a file": (add_files, ["extra added_tokens.json", "extra pytorch_model.bin"]),
            "rename": (lambda: os.rename(path / "vocab.txt", path / "vocab.txt.bak"),
                       ["missing vocab.txt", "extra vocab.txt.bak"]),
        }
        if layout == "hf-cache":
            assert repo_folder is not None
            main = repo_folder / "refs" / "main"
            cases["refs/main rewritten"] = (lambda: main.write_text("0" * 40), ["changed refs/main (holds '" + "0" * 40])
            cases["refs/main deleted"] = (lambda: main.unlink(), ["missing refs/main (deploy wrote it"])
        else:
            cases["model.sig added to an unsigned copy"] = (lambda: (path / "model.sig").write_text("{}"),
                                                            ["extra model.sig"])
        assert cli("audit", "--verify").exit_code == 0  # every file proven once: now in the stat cache
        for name, (damage, expected) in cases.items():
            damage()
            for mode in ("fast", "deep"):
                r = cli("audit", "--deep" if mode == "deep" else "--verify", "--json")
                rows = r.json()["deployments"]
                found = _drift_names(rows[0]) if rows else []
                caught = (r.exit_code == 1 and rows[0]["state"] == "drifted"
                          and all(any(f.startswith(e) for f in found) for e in expected) and len(found) == len(expected))
                t.record(f"{name}: {mode} ({found})", caught)
            again = cli("deploy", REPO, "--target", root, "--layout", layout, "--json")
            clean = cli("audit", "--deep", "--json")
            got = {p.relative_to(path).as_posix(): p.read_bytes() for p in path.rglob("*") if p.is_file()}
            with reg.catalog.reader() as session:
                event = session.scalars(select(Event).where(Event.action == "deploy").order_by(Event.id.desc())).first()
            t.record(f"{name}: repaired ({again.stderr[-200:] or again.json()['repaired']})",
                     again.exit_code == 0 and bool(again.json()["repaired"]) and clean.exit_code == 0
                     and got == model and event is not None and event.details["repairs"] == len(again.json()["repaired"]))
    finally:
        if copied:
            shutil.rmtree(root, ignore_errors=True)
    assert t.escaped == []


def test_an_in_place_write_through_a_hard_link_is_a_store_fault_and_deploy_refuses_to_spread_it(reg, cli, tmp_path):
    """On the store's filesystem a deployed file is the store's blob (a hard link): writing into it corrupts both.
    audit names the copy, verify the store, and deploy refuses to link the rotten blob anywhere (exit 5) until the
    store is repaired."""
    folder = _model(tmp_path / "m")
    add_registered(reg, folder, REPO)
    r = cli("deploy", REPO, "--target", tmp_path / "plain", "--layout", "dir", "--json")
    assert r.exit_code == 0 and r.json()["repos"][0]["linked"] > 0
    _in_place(tmp_path / "plain" / SHARD1, _flip)
    assert cli("audit", "--verify").exit_code == 1
    r = cli("deploy", REPO, "--target", tmp_path / "elsewhere", "--layout", "dir")
    assert r.exit_code == 5 and "registry verify" in r.stderr and not (tmp_path / "elsewhere").exists()
    assert cli("verify").exit_code == 1
    assert cli("add", folder, "--name", REPO).exit_code == 0
    add_registered(reg, folder, REPO)
    again = cli("deploy", REPO, "--target", tmp_path / "plain", "--layout", "dir", "--json")
    assert again.exit_code == 0 and any(SHARD1 in x for x in again.json()["repaired"])
    assert cli("audit", "--deep").exit_code == 0 and cli("verify", "--deep").exit_code == 0
