"""The catalog itself (issue 12): a damaged catalog or stat cache, a full disk inside SQLite's own writes, two
commands racing the first migration, and a catalog deleted under a full store."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.conftest import PG_AVAILABLE, make_bert_like, postgres_database

REPO_ROOT = Path(__file__).resolve().parents[2]


class _Result:
    def __init__(self, proc: subprocess.CompletedProcess) -> None:
        self.exit_code, self.stdout, self.stderr = proc.returncode, proc.stdout, proc.stderr


def _proc(env: dict[str, str], *args: str) -> _Result:
    """``registry ARGS`` in a fresh process (a damaged file must meet a process that never opened it)."""
    full = {**os.environ, **env, "PYTHONPATH": str(REPO_ROOT)}
    return _Result(subprocess.run([sys.executable, "-m", "registry", *args], env=full, capture_output=True,
                                  text=True, timeout=120))


def _ok_error(r, *needles: str, code: int) -> bool:
    """A clear error: the exit code, no traceback or internal error, and every needle in the message."""
    text = r.stderr
    return (r.exit_code == code and "Traceback" not in text and "internal error" not in text
            and all(n.lower() in text.lower() for n in needles))


@pytest.fixture
def added(cli, tmp_path):
    r = cli("add", make_bert_like(tmp_path / "m", hidden=16), "--name", "acme/tiny", "--json")
    assert r.exit_code == 0, r.stderr
    return r.json()


def _sqlite_file(url: str) -> Path:
    return Path(url.removeprefix("sqlite:///"))


def _damage_sqlite(path: Path, how: str) -> None:
    data = path.read_bytes()
    for suffix in ("-wal", "-shm"):
        Path(str(path) + suffix).unlink(missing_ok=True)
    if how == "garbage":
        path.write_bytes(os.urandom(len(data)))
    elif how == "garbage-after-header":
        path.write_bytes(data[:100] + os.urandom(len(data) - 100))
    elif how == "truncate":
        path.write_bytes(data[: len(data) // 3])
    elif how == "zero":
        path.write_bytes(bytes(len(data)))
    elif how == "drop-table":
        conn = sqlite3.connect(path)
        conn.execute("PRAGMA foreign_keys=OFF")
        conn.execute("DROP TABLE models")
        conn.commit()
        conn.close()
    else:
        raise AssertionError(how)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_damaged_sqlite_catalog_is_named_with_what_to_do(registry_env, tmp_path, database_url, trials):
    t = trials("corruption: catalog")
    assert _proc(registry_env, "add", str(make_bert_like(tmp_path / "m", hidden=16)), "--name", "acme/tiny"
                 ).exit_code == 0
    path = _sqlite_file(database_url)
    pristine = path.read_bytes()
    for how in ("garbage", "garbage-after-header", "truncate", "zero", "drop-table"):
        path.write_bytes(pristine)
        _damage_sqlite(path, how)
        for command in (["list"], ["show", "acme/tiny"], ["verify"]):
            r = _proc(registry_env, *command)
            t.record(f"{how}: {' '.join(command)}: exit {r.exit_code}: {r.stderr[-300:]}",
                     _ok_error(r, str(path), "restore", code=10))
    assert t.escaped == []


@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
def test_a_postgres_catalog_missing_a_table_is_named(cli, added, registry_env, database_url, trials):
    t = trials("corruption: catalog")
    import psycopg

    with psycopg.connect(database_url.replace("postgresql+psycopg://", "postgresql://"), autocommit=True) as conn:
        conn.execute("DROP TABLE models CASCADE")
    for command in (["list"], ["show", "acme/tiny"], ["verify"]):
        r = _proc(registry_env, *command)
        t.record(f"drop-table: {' '.join(command)}: exit {r.exit_code}: {r.stderr[-300:]}",
                 _ok_error(r, "is damaged", "restore", code=10))
    assert t.escaped == []


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_damaged_stat_cache_is_rebuilt_and_said_so(registry_env, tmp_path, trials):
    t = trials("corruption: stat cache")
    assert _proc(registry_env, "add", str(make_bert_like(tmp_path / "m", hidden=16)), "--name", "acme/tiny"
                 ).exit_code == 0
    cache = Path(registry_env["REGISTRY_HOME"]) / "blobs" / "statcache.sqlite"
    for how in ("garbage", "garbage-after-header", "truncate", "zero", "drop-table-stat"):
        assert _proc(registry_env, "verify").exit_code == 0
        if how == "drop-table-stat":
            conn = sqlite3.connect(cache)
            conn.execute("DROP TABLE stat")
            conn.execute("CREATE TABLE stat (x INTEGER)")  # a wrong table under the right name
            conn.commit()
            conn.close()
        else:
            _damage_sqlite(cache, how)
        r = _proc(registry_env, "verify", "--json")
        rebuilt = r.exit_code == 0 and "stat cache" in r.stderr and "rebuilt" in r.stderr
        again = _proc(registry_env, "verify", "--json")  # the rebuilt cache works: the next verify hashes nothing
        t.record(f"{how}: exit {r.exit_code}: {r.stderr[-300:]}",
                 rebuilt and again.exit_code == 0 and json.loads(again.stdout)["blobs_hashed"] == 0)
    assert t.escaped == []


# ---- a full disk inside SQLite's own writes ----------------------------------------------------------

def _cap_sqlite_pages(monkeypatch) -> None:
    """Every catalog connection may not grow its file: SQLite itself then reports SQLITE_FULL ("database or disk
    is full") on the first write that needs a new page, exactly as on a full disk."""
    from sqlalchemy import event

    import registry.catalog.engine as engine_mod

    real = engine_mod.create_catalog_engine

    def capped(url: str):
        engine = real(url)

        @event.listens_for(engine, "connect")
        def _cap(dbapi_conn, _record) -> None:
            pages = dbapi_conn.execute("PRAGMA page_count").fetchone()[0]
            dbapi_conn.execute(f"PRAGMA max_page_count={pages}")

        return engine

    monkeypatch.setattr(engine_mod, "create_catalog_engine", capped)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_sqlite_full_inside_the_catalog_is_exit_10(cli, added, tmp_path, monkeypatch, trials):
    t = trials("crash: disk full")
    # writes that grow the catalog: a second model, the event log of verify, a removal's log
    big = make_bert_like(tmp_path / "big", hidden=64, seed=3)
    for i in range(30):  # enough files that their rows need new pages
        (big / f"extra_{i}.json").write_text("{}" * (i + 1))
    _cap_sqlite_pages(monkeypatch)
    for command in (["add", str(big), "--name", "acme/big"], ["verify"], ["verify", "--deep"]):
        r = cli(*command)
        caught = r.exit_code == 0 or _ok_error(r, "no space left", code=10)
        t.record(f"{' '.join(command)}: exit {r.exit_code}: {r.stderr[-300:]}", caught)
    monkeypatch.undo()
    assert cli("verify").exit_code == 0  # nothing partial was recorded
    assert t.escaped == []


def _tmpfs(path: Path, size: str) -> bool:
    path.mkdir(parents=True, exist_ok=True)
    return subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                          capture_output=True).returncode == 0


def test_a_really_full_disk_under_the_catalog_is_exit_10(tmp_path, trials):
    """The catalog on a 2 MiB tmpfs (needs root; skipped where mount is refused), filled to the last byte while
    a connection keeps the WAL open: every command that writes exits 10 naming the catalog."""
    mnt = tmp_path / "tiny"
    if os.geteuid() != 0 or not _tmpfs(mnt, "2m"):
        pytest.skip("cannot mount a tmpfs here (not root)")
    t = trials("crash: disk full")
    try:
        env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "REGISTRY_HOME": str(tmp_path / "home"),
               "REGISTRY_DATABASE_URL": f"sqlite:///{mnt / 'catalog.db'}", "REGISTRY_SMOKE": "0"}
        model = make_bert_like(tmp_path / "m", hidden=16)

        def run(*args: str) -> subprocess.CompletedProcess:
            return subprocess.run([sys.executable, "-m", "registry", *args], env=env, capture_output=True,
                                  text=True, timeout=120)

        assert run("add", str(model), "--name", "acme/tiny").returncode == 0
        keep = sqlite3.connect(mnt / "catalog.db")
        keep.execute("PRAGMA journal_mode=WAL")
        keep.execute("SELECT count(*) FROM models").fetchall()
        with open(mnt / "filler", "wb", buffering=0) as f:
            try:
                while True:
                    f.write(b"\0" * 4096)
                    f.flush()
            except OSError:
                pass
        other = make_bert_like(tmp_path / "m2", hidden=32, seed=9)
        for args in (("add", str(other), "--name", "acme/other"), ("verify",), ("rm", "acme/tiny")):
            r = run(*args)
            text = r.stderr
            caught = r.returncode == 10 and "Traceback" not in text and "internal error" not in text \
                and "no space left" in text
            t.record(f"{' '.join(args)}: exit {r.returncode}: {text[-300:]}", caught)
        keep.close()
        (mnt / "filler").unlink()
        r = run("verify")
        t.record(f"after freeing space: verify exit {r.returncode}", r.returncode == 0)
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)
    assert t.escaped == []


# ---- first use under concurrency ---------------------------------------------------------------------

PAIRS = 30


def _command(env: dict[str, str], args: list[str]) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "registry", *args], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _race_pair(home: Path, url: str) -> list[tuple[int, str]]:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "REGISTRY_HOME": str(home), "REGISTRY_DATABASE_URL": url,
           "REGISTRY_SMOKE": "0"}
    procs = [_command(env, ["list"]), _command(env, ["verify"])]
    out = []
    for p in procs:
        _, err = p.communicate(timeout=180)
        out.append((p.returncode, err[-300:]))
    return out


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_two_commands_starting_at_once_on_a_new_home(tmp_path, backend, trials):
    if backend == "postgres" and not PG_AVAILABLE:
        pytest.skip("PostgreSQL is not reachable")
    t = trials("concurrency: first use")
    import contextlib

    with contextlib.ExitStack() as stack:
        urls = []
        for i in range(PAIRS):
            if backend == "sqlite":
                urls.append(f"sqlite:///{tmp_path / f'h{i}' / 'catalog.db'}")
            else:
                urls.append(stack.enter_context(postgres_database()))
        with ThreadPoolExecutor(max_workers=3) as pool:  # three pairs at a time: six processes on 2 cores
            results = list(pool.map(lambda i: _race_pair(tmp_path / f"h{i}", urls[i]), range(PAIRS)))
    for i, pair in enumerate(results):
        t.record(f"pair {i}: {pair}", all(code == 0 for code, _ in pair))
    assert t.escaped == []


# ---- `rm catalog.db` under a full store ---------------------------------------------------------------

@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_deleted_catalog_over_a_full_store_is_said(registry_env, tmp_path, database_url, trials):
    t = trials("corruption: catalog")
    assert _proc(registry_env, "add", str(make_bert_like(tmp_path / "m", hidden=16)), "--name", "acme/tiny"
                 ).exit_code == 0
    path = _sqlite_file(database_url)
    for suffix in ("", "-wal", "-shm"):
        Path(str(path) + suffix).unlink(missing_ok=True)
    r = _proc(registry_env, "list")
    t.record(f"rm catalog.db: list: {r.stderr[-400:]}",
             r.exit_code == 0 and "was the catalog deleted or replaced" in r.stderr and "Restore it" in r.stderr
             and "registry gc" in r.stderr)
    assert t.escaped == []

