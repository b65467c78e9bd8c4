"""kill -9 of ``registry deploy`` (real subprocesses, REGISTRY_KILLPOINT) and what the rerun does: it removes the
dead deploy's leftovers (only those whose writer is gone: the folder's flock), records a complete unrecorded ``dir``
copy it recognises by content, and ends with a copy ``audit --verify`` calls ok. docs/reliability.md, "Deployments:
damage, repair and re-runs"."""

from __future__ import annotations

import fcntl
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest

from registry.services.deploy import CACHE_STAGING_RE, TEMP_RE
from tests.reliability.tally import budget
from tests.serve_helpers import add_registered, make_tiny_repo

REPO = "acme/tiny"
SHM = Path("/dev/shm")
POINTS = ("deploy:before-blob-rename", "deploy:after-rename", "deploy:mid-copy")

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


def _other_fs(tmp_path: Path) -> Path | None:
    """A folder on another filesystem than the store (deploy copies there instead of hard-linking), or None."""
    if SHM.is_dir() and os.access(SHM, os.W_OK) and os.stat(SHM).st_dev != os.stat(tmp_path).st_dev:
        return SHM
    return None


def _run(env: dict[str, str], *args: str, killpoint: str | None = None) -> subprocess.CompletedProcess:
    full = {**os.environ, **env, "PYTHONPATH": os.getcwd()}
    full.pop("REGISTRY_KILLPOINT", None)
    if killpoint:
        full["REGISTRY_KILLPOINT"] = killpoint
    return subprocess.run([sys.executable, "-m", "registry", *map(str, args)], env=full, capture_output=True,
                          text=True, timeout=300)


def _leftovers(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if TEMP_RE.match(p.name) or CACHE_STAGING_RE.match(p.name)
            or ".registry-staging-" in p.name]


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def test_kill_9_during_deploy_then_rerun(trials, registry_env, reg, cli, tmp_path):
    folder = make_tiny_repo(tmp_path / "m", big=False)
    add_registered(reg, folder, REPO)
    model = _files(folder)
    other = _other_fs(tmp_path)
    t = trials("kill -9: deploy")
    rng = random.Random(12)
    base = tmp_path / "targets"
    scratch = (other / f"registry-kill-{os.getpid()}-{tmp_path.name}") if other else None
    try:
        for i in range(budget(10, 50)):
            point = rng.choice(POINTS if other else POINTS[:2])
            layout = rng.choice(("dir", "hf-cache"))
            across = point == "deploy:mid-copy" or (other is not None and rng.random() < 0.5)
            parent = scratch if across else base
            assert parent is not None
            target = parent / f"t{i}"
            case = f"{point} {layout}{' (copy)' if across else ''}"
            killed = _run(registry_env, "deploy", REPO, "--target", target, "--layout", layout, killpoint=point)
            if killed.returncode != -9:
                t.record(f"{case}: the killpoint did not fire (exit {killed.returncode}: {killed.stderr[-300:]})", False)
                continue
            left_before = _leftovers(parent)
            rerun = cli("deploy", REPO, "--target", target, "--layout", layout, "--json")
            if rerun.exit_code != 0:
                t.record(f"{case}: rerun exit {rerun.exit_code}: {rerun.stderr[-300:]}", False)
                continue
            out = rerun.json()
            snap = Path(out["path"])
            got = _files(snap)
            audit = cli("audit", "--verify", "--model", REPO, "--json")
            row = next(d for d in audit.json()["deployments"] if d["path"] == str(snap))
            ok = (got == model and not _leftovers(parent) and row["state"] == "ok"
                  and bool(out["cleaned"]) == bool(left_before)
                  and (point != "deploy:after-rename" or layout != "dir" or out["adopted"]))
            t.record(f"{case}: files {'ok' if got == model else 'differ'}, leftovers {_leftovers(parent)}, "
                     f"audit {row['state']}, cleaned {out['cleaned']}, adopted {out['adopted']}", ok)
    finally:
        if scratch is not None:
            import shutil
            shutil.rmtree(scratch, ignore_errors=True)
    assert t.escaped == []


def test_a_live_writers_leftovers_stay_and_audit_reports_them(trials, registry_env, reg, cli, tmp_path):
    """The lock rule: a leftover is removed only when no deploy holds the folder's lock; while one does (here the
    test holds the shared flock a running deploy holds), the rerun leaves it and audit names it."""
    add_registered(reg, make_tiny_repo(tmp_path / "m", big=False), REPO)
    t = trials("kill -9: deploy")
    target = tmp_path / "cache"
    killed = _run(registry_env, "deploy", REPO, "--target", target, killpoint="deploy:before-blob-rename")
    assert killed.returncode == -9, killed.stderr
    folder = target / "models--acme--tiny"
    left = _leftovers(folder)
    assert left and all(p.parent.name == "blobs" for p in left)
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH)  # "another deploy is writing here"
        r = cli("deploy", REPO, "--target", target, "--json")
        assert r.exit_code == 0 and r.json()["cleaned"] == []
        t.record("leftover kept while a writer holds the folder", set(_leftovers(folder)) == set(left))
        audit = cli("audit", "--verify", "--json")
        row = audit.json()["deployments"][0]
        t.record("audit reports the leftover", audit.exit_code == 1 and row["state"] == "drifted"
                 and sorted(row["drift"]["leftovers"]) == sorted(str(p) for p in left)
                 and "killed deploy" in row["detail"])
    finally:
        os.close(fd)
    r = cli("deploy", REPO, "--target", target, "--json")
    t.record("removed once the writer is gone", r.exit_code == 0 and sorted(r.json()["cleaned"]) == sorted(map(str, left))
             and not _leftovers(folder))
    t.record("audit clean after the rerun", cli("audit", "--verify").exit_code == 0)
    assert t.escaped == []


def test_an_unrecorded_dir_that_is_not_exactly_the_model_is_still_refused(trials, registry_env, reg, cli, tmp_path):
    folder = make_tiny_repo(tmp_path / "m", big=False)
    add_registered(reg, folder, REPO)
    t = trials("kill -9: deploy")
    tamper = {
        "a file changed": lambda d: (d / "vocab.txt").unlink() or (d / "vocab.txt").write_text("[PAD]\nother\n"),
        "a file added": lambda d: (d / "notes.md").write_text("mine"),
        "a file missing": lambda d: (d / "config.json").unlink(),
        "same size, other bytes": lambda d: _same_size_rewrite(d / "vocab.txt"),
    }
    for name, change in tamper.items():
        target = tmp_path / name.replace(" ", "-").replace(",", "")
        killed = _run(registry_env, "deploy", REPO, "--target", target, "--layout", "dir", killpoint="deploy:after-rename")
        assert killed.returncode == -9, killed.stderr
        change(target)
        before = _files(target)
        r = cli("deploy", REPO, "--target", target, "--layout", "dir")
        t.record(f"{name}: refused", r.exit_code == 9 and "not an empty folder" in r.stderr and _files(target) == before
                 and "Traceback" not in r.stderr)
    assert t.escaped == []


def _same_size_rewrite(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[0] ^= 0x01
    path.unlink()
    path.write_bytes(bytes(data))
