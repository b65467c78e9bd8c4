"""kill -9 of add, import, pull and gc at each named kill point and at random times (issue 12).

After each kill: the catalog is consistent (every model has its components, every file row's blob is in the
store), `registry verify` exits 0 (leftovers are notes), a rerun of the same command succeeds and ends in the
same state as an unkilled run, and after the rerun and `registry gc` no stray file, staging folder or lease is left.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import select

from registry.catalog.models import Component, File, Model
from registry.config import Settings
from registry.services.context import Registry
from tests.conftest import make_bert_like, run_in_process
from tests.reliability.tally import budget

REPO_ROOT = Path(__file__).resolve().parents[2]


class Home:
    """One registry home on SQLite, used by child processes and by in-process checks."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.env = {"REGISTRY_HOME": str(root), "REGISTRY_DATABASE_URL": f"sqlite:///{root / 'catalog.db'}",
                    "REGISTRY_SMOKE": "0", "REGISTRY_ACTOR": "tester", "REGISTRY_NODE": "test-node",
                    "HF_HUB_DISABLE_TELEMETRY": "1"}

    def spawn(self, args: list[str], killpoint: str | None = None) -> subprocess.Popen:
        env = {**os.environ, **self.env, "PYTHONPATH": str(REPO_ROOT)}
        env.pop("REGISTRY_KILLPOINT", None)
        if killpoint:
            env["REGISTRY_KILLPOINT"] = killpoint
        return subprocess.Popen([sys.executable, "-m", "registry", *args], env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)

    def cli(self, *args: str):
        saved = dict(os.environ)
        os.environ.update(self.env)
        try:
            return run_in_process(*args)
        finally:
            os.environ.clear()
            os.environ.update(saved)

    def open(self) -> Registry:
        saved = dict(os.environ)
        os.environ.update(self.env)
        try:
            return Registry.open(Settings.from_env())
        finally:
            os.environ.clear()
            os.environ.update(saved)

    def state(self) -> tuple:
        """What an unkilled run must end with: the models and their states, and the store's blobs."""
        with self.open() as reg:
            with reg.catalog.reader() as s:
                models = sorted((m.name, m.revision.commit_sha, m.state) for m in s.scalars(select(Model)))
            blobs = sorted(sha for sha, _ in reg.store.iter_blobs())
        return tuple(models), tuple(blobs)

    def consistent(self) -> str | None:
        """None, or what is inconsistent in the catalog."""
        with self.open() as reg:
            with reg.catalog.reader() as s:
                for m in s.scalars(select(Model)):
                    if not s.scalars(select(Component).where(Component.model_id == m.id)).first():
                        return f"model {m.name} has no components (a partial row)"
                for sha in set(s.scalars(select(File.blob_sha256))):
                    if not reg.store.path_for(sha).is_file():
                        return f"file row's blob {sha[:12]} is not in the store"
        return None

    def leftovers(self) -> list[str]:
        store = self.root / "blobs"
        out = [str(p) for p in (store / "tmp").rglob("*")] if (store / "tmp").is_dir() else []
        out += [str(p) for p in (store / "leases").glob("*")] if (store / "leases").is_dir() else []
        out += [str(p) for p in (store / "sha256").rglob("*") if p.is_file() and len(p.name) != 64]
        return out


def _kill_trial(home: Home, args: list[str], baseline: tuple, *, killpoint: str | None = None,
                after_s: float | None = None, rerun: list[str] | None = None, extras_ok: bool = False) -> str | None:
    """Kill ``registry ARGS`` at a kill point or after ``after_s`` seconds; None when every invariant holds."""
    proc = home.spawn(args, killpoint)
    if after_s is not None:
        try:
            proc.wait(timeout=after_s)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
    _, err = proc.communicate(timeout=300)
    if killpoint and proc.returncode != -signal.SIGKILL:
        return f"did not die at {killpoint}: exit {proc.returncode}: {err[-300:]}"
    if proc.returncode not in (0, -signal.SIGKILL):
        return f"exit {proc.returncode}: {err[-300:]}"
    if (why := home.consistent()) is not None:
        return why
    v = home.cli("verify", "--json")
    # gc's own garbage (blobs of a removed model, past the grace) is "extra" before gc runs, killed or not
    real = [p for p in v.json()["problems"] if not (extras_ok and p["problem"] == "extra")]
    if v.exit_code not in ((0, 1) if extras_ok else (0,)) or real:
        return f"verify after the kill exited {v.exit_code}: {real[:3]}"
    r = home.cli(*(rerun or args))
    if r.exit_code != 0:
        return f"the rerun exited {r.exit_code}: {r.stderr[-300:]}"
    g = home.cli("gc")
    if g.exit_code != 0:
        return f"gc after the rerun exited {g.exit_code}: {g.stderr[-300:]}"
    if home.state() != baseline:
        return f"state after the rerun differs from an unkilled run: {home.state()} != {baseline}"
    if left := home.leftovers():
        return f"stray files after the rerun and gc: {left[:5]}"
    if (why := home.consistent()) is not None:
        return why
    return None


def _template(tmp_path: Path) -> Path:
    """An empty, migrated home, copied for each trial (the migration is the slow part of a first command)."""
    home = Home(tmp_path / "template")
    assert home.cli("list").exit_code == 0
    return home.root


def _fresh(template: Path, where: Path) -> Home:
    import shutil

    shutil.copytree(template, where)
    return Home(where)


def _run_kills(t, tmp_path, template, args_for, killpoints, prepare=None, rerun_for=None, extras_ok=False):
    base = _fresh(template, tmp_path / "baseline")
    if prepare:
        prepare(base)
    started = time.monotonic()
    done = base.spawn(args_for(base))
    _, err = done.communicate(timeout=300)
    assert done.returncode == 0, err
    duration = time.monotonic() - started
    assert base.cli("gc").exit_code == 0
    baseline = base.state()
    rng = random.Random(12)
    cases = [(kp, None) for kp in killpoints] + [(None, rng.uniform(0.2, duration)) for _ in range(budget(10, 50))]
    for i, (kp, after) in enumerate(cases):
        home = _fresh(template, tmp_path / f"trial{i}")
        if prepare:
            prepare(home)
        args = args_for(home)
        why = _kill_trial(home, args, baseline, killpoint=kp, after_s=after,
                          rerun=rerun_for(home) if rerun_for else None, extras_ok=extras_ok)
        t.record(f"{kp or f'after {after:.2f}s'}: {why}", why is None)


def test_kill_9_add(tmp_path, trials):
    t = trials("kill -9: add")
    model = make_bert_like(tmp_path / "model", hidden=64, shards=2)
    template = _template(tmp_path)
    _run_kills(t, tmp_path, template, lambda h: ["add", str(model), "--name", "acme/tiny"],
               ["add:after-staging", "add:after-blob-rename", "add:after-commit"])
    assert t.escaped == []


def test_kill_9_import(tmp_path, trials):
    t = trials("kill -9: import")
    source = Home(tmp_path / "source")
    assert source.cli("add", str(make_bert_like(tmp_path / "model", hidden=64, shards=2)), "--name",
                      "acme/tiny").exit_code == 0
    bundle = tmp_path / "bundle.tar"
    assert source.cli("export", "acme/tiny", "--output", str(bundle)).exit_code == 0
    template = _template(tmp_path)
    _run_kills(t, tmp_path, template, lambda h: ["import", str(bundle)],
               ["import:after-blob-copy", "import:after-blobs", "import:after-commit"])
    assert t.escaped == []


def _with_garbage(home: Home) -> None:
    """Two models, one removed and its blobs aged past gc's grace: gc has something to remove."""
    for name, seed in (("acme/keep", 1), ("acme/drop", 2)):
        folder = home.root.parent / f"{home.root.name}-{name.split('/')[1]}"
        assert home.cli("add", str(make_bert_like(folder, hidden=32, seed=seed)), "--name", name).exit_code == 0
    assert home.cli("rm", "acme/drop").exit_code == 0
    old = time.time() - 7200
    for _sha, path in home.open().store.iter_blobs():
        os.utime(path, (old, old), follow_symlinks=False)


def test_kill_9_gc(tmp_path, trials):
    t = trials("kill -9: gc")
    template = _template(tmp_path)
    _run_kills(t, tmp_path, template, lambda h: ["gc"], ["gc:after-plan", "gc:after-blob-remove", "gc:before-log"],
               prepare=_with_garbage, extras_ok=True)
    assert t.escaped == []


@pytest.mark.hubclient
def test_kill_9_pull(tmp_path, trials):
    from tests.hubsim import HubSim

    t = trials("kill -9: pull")
    sim = HubSim()
    sim.add_repo("test-org/kill-bert", make_bert_like(tmp_path / "upstream", hidden=64, shards=2))
    with sim:
        template = _template(tmp_path)
        _run_kills(t, tmp_path, template, lambda h: ["pull", "test-org/kill-bert", "--endpoint", sim.url],
                   ["pull:after-staging", "pull:after-blob-rename", "pull:after-commit"])
    assert t.escaped == []


# ---- concurrency ---------------------------------------------------------------------------------------

@pytest.mark.hubclient
@pytest.mark.parametrize("database_url", [pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True)
def test_four_pullers_into_one_postgres_catalog_and_one_store(registry_env, reg, tmp_path, trials):
    from tests.hubsim import HubSim
    from tests.pull_helpers import ADAPTER, BASE, make_adapter, make_base, pull_process

    t = trials("concurrency: 4 pullers")
    sim = HubSim()
    sim.add_repo(BASE, make_base(tmp_path / "up" / "base"))
    sim.add_repo(ADAPTER, make_adapter(tmp_path / "up" / "adapter"))
    with sim:
        sim.faults.throttle = 4 * 1024 * 1024  # slow enough that the four overlap
        procs = [pull_process(registry_env, name, "--endpoint", sim.url) for name in (ADAPTER, BASE, ADAPTER, BASE)]
        outs = [p.communicate(timeout=300) for p in procs]
    for i, (p, (_, err)) in enumerate(zip(procs, outs)):
        t.record(f"puller {i}: exit {p.returncode}: {err[-300:]}", p.returncode == 0)
    with reg.catalog.reader() as s:
        referenced = set(s.scalars(select(File.blob_sha256)))
        names = sorted(m.name for m in s.scalars(select(Model)))
    stored = [sha for sha, _ in reg.store.iter_blobs()]
    t.record(f"one copy of each blob: {len(stored)} stored, {len(referenced)} referenced",
             sorted(stored) == sorted(referenced) and reg.store.stray_files() == [])
    t.record(f"models {names}", names == sorted([ADAPTER, BASE]))
    v = run_in_process("verify")
    t.record(f"verify exit {v.exit_code}: {v.stdout[-300:]}", v.exit_code == 0)
    assert t.escaped == []


@pytest.mark.hubclient
def test_gc_during_a_pull_leaves_the_pulls_blobs(registry_env, reg, tmp_path, trials):
    from tests.conftest import write_json, write_safetensors
    from tests.hubsim import HubSim
    from tests.pull_helpers import pull_process

    t = trials("concurrency: gc during pull")
    folder = tmp_path / "big"
    write_json(folder / "config.json", {"model_type": "bert", "hidden_size": 1024})
    write_safetensors(folder / "model.safetensors", {"w": ("F32", [1024, 1024])})  # 4 MiB
    write_safetensors(folder / "extra.safetensors", {"v": ("F32", [64, 64])})
    sim = HubSim()
    sim.add_repo("test-org/big", folder)
    with sim:
        sim.faults.throttle = 2 * 1024 * 1024
        proc = pull_process(registry_env, "test-org/big", "--endpoint", sim.url)
        gcs = 0
        while proc.poll() is None:
            g = run_in_process("gc", "--grace", "0")
            gcs += 1
            t.record(f"gc {gcs} during the pull: exit {g.exit_code}: {g.stderr[-200:]}", g.exit_code == 0)
            time.sleep(0.2)
        _, err = proc.communicate(timeout=300)
    t.record(f"the pull: exit {proc.returncode}: {err[-300:]}", proc.returncode == 0)
    v = run_in_process("verify")
    t.record(f"verify after: exit {v.exit_code}: {v.stdout[-300:]}", v.exit_code == 0)
    with reg.catalog.reader() as s:
        missing = [sha for sha in s.scalars(select(File.blob_sha256)) if not reg.store.path_for(sha).is_file()]
    t.record(f"the pull's blobs survive: missing {missing}", not missing)
    assert t.escaped == []
