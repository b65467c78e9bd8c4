"""Alembic migrations on SQLite and Postgres: one head, up from empty, down to base and up again, no drift,
and an out-of-date or unknown schema refused with a message naming `registry db upgrade`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator

import pytest
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, inspect, text

from registry.catalog import migrate
from registry.catalog.engine import SCHEMA_HEAD, create_catalog_engine, open_catalog
from registry.errors import SchemaOutOfDate

TABLES = {"repos", "revisions", "refs", "blobs", "files", "models", "components", "component_files", "lineage",
          "smoke_runs", "deployments", "events", "signatures"}


@pytest.fixture
def engine(database_url) -> Iterator[Engine]:
    eng = create_catalog_engine(database_url)
    yield eng
    eng.dispose()


def _tables(engine: Engine) -> set[str]:
    inspect_ = inspect(engine)
    return set(inspect_.get_table_names()) - {"alembic_version"}


def test_one_head_and_a_linear_history(engine):
    script = ScriptDirectory.from_config(migrate.alembic_config(engine))
    assert len(script.get_heads()) == 1
    assert script.get_bases() == ["0001"]
    for rev in script.walk_revisions():
        assert rev.branch_labels == set() and not rev.is_merge_point


def test_the_fast_schema_gate_knows_the_head(engine):
    """open_catalog compares against a constant instead of asking alembic: it must be the real head."""
    assert SCHEMA_HEAD == migrate.head_revision(engine)


def test_upgrade_from_empty_then_no_drift(engine):
    assert migrate.is_empty(engine) and migrate.current_revision(engine) is None
    migrate.upgrade(engine)
    assert migrate.current_revision(engine) == migrate.head_revision(engine)
    assert _tables(engine) == TABLES
    assert migrate.drift(engine) == []


def test_downgrade_to_base_and_up_again(engine):
    migrate.upgrade(engine)
    migrate.downgrade(engine, "base")
    assert _tables(engine) == set()
    assert migrate.current_revision(engine) is None
    migrate.upgrade(engine)
    assert _tables(engine) == TABLES and migrate.drift(engine) == []
    # the append-only triggers came back with the tables
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO events (actor, host, action, subject, details) "
                          "VALUES ('a', 'h', 'x', 's', '{}')"))
    with pytest.raises(Exception, match="append-only"):
        with engine.begin() as conn:
            conn.execute(text("DELETE FROM events"))


def test_fresh_catalog_is_migrated_on_first_open(database_url):
    catalog = open_catalog(database_url)
    try:
        assert migrate.current_revision(catalog.engine) == migrate.head_revision(catalog.engine)
    finally:
        catalog.engine.dispose()


def test_downgraded_catalog_is_refused(engine, database_url):
    migrate.upgrade(engine)
    migrate.downgrade(engine, "base")
    with pytest.raises(SchemaOutOfDate, match="registry db upgrade") as info:
        open_catalog(database_url)
    assert info.value.exit_code == 6
    assert _tables(engine) == set()  # refused, not silently re-created


def test_catalog_stamped_at_an_unknown_revision_is_refused(engine, database_url):
    migrate.upgrade(engine)
    with engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = 'ffff9999'"))
    with pytest.raises(SchemaOutOfDate, match=r"'ffff9999'.*does not know.*registry db upgrade"):
        open_catalog(database_url)


# ---- the CLI ------------------------------------------------------------------------------------

def test_db_commands_on_a_fresh_catalog(cli):
    r = cli("db", "current", "--json")
    assert r.exit_code == 0, r.stderr
    assert r.json() == {"current": None, "head": SCHEMA_HEAD, "up_to_date": False}
    r = cli("db", "check", "--json")
    assert r.exit_code == 6 and r.json()["ok"] is False
    r = cli("db", "upgrade", "--json")
    assert r.exit_code == 0 and r.json() == {"from": None, "to": SCHEMA_HEAD}
    r = cli("db", "check", "--json")
    assert r.exit_code == 0 and r.json() == {"current": SCHEMA_HEAD, "head": SCHEMA_HEAD, "ok": True, "drift": []}
    r = cli("db", "current")
    assert r.exit_code == 0 and f"current: {SCHEMA_HEAD}  head: {SCHEMA_HEAD}" in r.stdout
    r = cli("db", "upgrade")  # idempotent
    assert r.exit_code == 0 and f"{SCHEMA_HEAD} -> {SCHEMA_HEAD}" in r.stdout


def test_commands_refuse_an_out_of_date_catalog_until_upgraded(cli, database_url):
    assert cli("db", "upgrade").exit_code == 0
    eng = create_catalog_engine(database_url)
    migrate.downgrade(eng, "base")
    eng.dispose()
    r = cli("list")
    assert r.exit_code == 6
    assert "registry db upgrade" in r.stderr
    r = cli("list", "--json")
    assert r.exit_code == 6 and r.json()["error"] == "SchemaOutOfDate"
    r = cli("db", "check")
    assert r.exit_code == 6 and "run: registry db upgrade" in r.stdout
    assert cli("db", "upgrade").exit_code == 0
    assert cli("list", "--json").json() == {"models": []}


def test_db_upgrade_of_an_unknown_revision_explains(cli, database_url):
    assert cli("db", "upgrade").exit_code == 0
    eng = create_catalog_engine(database_url)
    with eng.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = 'ffff9999'"))
    eng.dispose()
    r = cli("db", "upgrade")
    assert r.exit_code == 6
    assert "ffff9999" in r.stderr and "newer registry" in r.stderr and "Traceback" not in r.stderr
    r = cli("db", "current", "--json")
    assert r.json()["current"] == "ffff9999" and r.json()["up_to_date"] is False


def test_db_commands_on_an_unreachable_database(cli, monkeypatch):
    monkeypatch.setenv("REGISTRY_DATABASE_URL", "postgresql://nobody@127.0.0.1:1/none")
    r = cli("db", "current")
    assert r.exit_code == 10
    assert "cannot reach the catalog" in r.stderr and "REGISTRY_DATABASE_URL" in r.stderr


def test_db_check_in_a_fresh_process(cli, registry_env):
    """The CLI process has imported nothing else: the models must still be known to the drift check."""
    assert cli("db", "upgrade").exit_code == 0
    proc = subprocess.run([sys.executable, "-m", "registry", "db", "check", "--json"], capture_output=True, text=True,
                          env={**os.environ, **registry_env}, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert json.loads(proc.stdout) == {"current": SCHEMA_HEAD, "head": SCHEMA_HEAD, "ok": True, "drift": []}


def test_two_commands_on_a_new_home_take_turns_at_the_first_migration(registry_env, tmp_path):
    """Commands started together on a fresh home all succeed: the first migrates, the others wait for it."""
    env = {**os.environ, **registry_env}
    procs = [subprocess.Popen([sys.executable, "-m", "registry", "list", "--json"], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(4)]
    results = [(p.wait(timeout=120), *p.communicate()) for p in procs]
    for code, out, err in results:
        assert code == 0, err
        assert json.loads(out) == {"models": []}


def test_a_missing_postgres_database_is_not_found_not_disk_full(cli, monkeypatch):
    from tests.conftest import PG_ADMIN_URL, PG_AVAILABLE

    if not PG_AVAILABLE:
        pytest.skip("PostgreSQL is not reachable on 127.0.0.1:5432")
    monkeypatch.setenv("REGISTRY_DATABASE_URL", PG_ADMIN_URL.rsplit("/", 1)[0] + "/registry_no_such_db_4c1f")
    r = cli("list")
    assert r.exit_code == 3, r.stderr
    assert "registry_no_such_db_4c1f" in r.stderr and "does not exist" in r.stderr and "createdb" in r.stderr
    assert "disk" not in r.stderr and "Traceback" not in r.stderr


# ---- 0002: the three model states ------------------------------------------------------------------

def _model_row(conn, state: str) -> None:
    conn.execute(text("INSERT INTO repos (repo_id, repo_type) VALUES ('acme/x', 'model')"))
    conn.execute(text("INSERT INTO revisions (repo_id, commit_sha, source) VALUES (1, :c, 'local:/x')"), {"c": "a" * 40})
    conn.execute(text("INSERT INTO models (name, revision_id, family, state, inferred, manifest, root_digest, "
                      "updated_at) VALUES ('acme/x', 1, 'transformers', :s, false, '{}', :r, CURRENT_TIMESTAMP)"),
                 {"s": state, "r": "b" * 64})
    conn.execute(text("INSERT INTO components (model_id, position, role, revision_id, required, pinned) "
                      "VALUES (1, 0, 'weights', 1, true, false)"))
    conn.execute(text("INSERT INTO smoke_runs (model_id, passed, device, dtype, library_versions, wall_ms, "
                      "output_shapes, stats) VALUES (1, true, 'cpu', 'float32', '{}', 1.0, '{}', '{}')"))


@pytest.mark.parametrize("old_state", ["fetching", "incomplete", "verified"])
def test_0002_keeps_every_row_and_allows_only_three_states(engine, old_state):
    migrate.upgrade(engine, "0001")
    with engine.begin() as conn:
        _model_row(conn, old_state)
    migrate.upgrade(engine, "0002")
    with engine.begin() as conn:
        state, reason = conn.execute(text("SELECT state, state_reason FROM models")).one()
        # re-creating the table on SQLite must not cascade into the rows that reference it
        assert conn.execute(text("SELECT count(*) FROM components")).scalar() == 1
        assert conn.execute(text("SELECT count(*) FROM smoke_runs")).scalar() == 1
    if old_state == "verified":
        assert (state, reason) == ("verified", None)
    else:  # nothing wrote these states; a row someone did write is quarantined, not lost
        assert state == "quarantined" and f"recorded as {old_state}" in reason and "migration 0002" in reason
    for dropped in ("fetching", "incomplete"):
        with pytest.raises(Exception, match="ck_models_state|CHECK constraint"):
            with engine.begin() as conn:
                conn.execute(text("UPDATE models SET state = :s, state_reason = NULL"), {"s": dropped})
    migrate.upgrade(engine)  # the later migrations on top of it: the tables match the models again
    assert migrate.drift(engine) == []
    migrate.downgrade(engine, "0001")
    with engine.begin() as conn:  # down again: the wider constraint is back, the rows are still there
        conn.execute(text("UPDATE models SET state = 'fetching', state_reason = NULL"))
        assert conn.execute(text("SELECT count(*) FROM components")).scalar() == 1
