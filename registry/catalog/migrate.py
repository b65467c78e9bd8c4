"""Alembic, driven from code: ``registry db upgrade | current | check`` and the schema gate."""

from __future__ import annotations

import contextlib
import fcntl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, inspect, text

from registry.catalog.base import Base
from registry.config import alembic_ini, migrations_dir


def alembic_config(engine: Engine) -> Config:
    cfg = Config(str(alembic_ini()))
    cfg.set_main_option("script_location", str(migrations_dir()))
    cfg.set_main_option("sqlalchemy.url", engine.url.render_as_string(hide_password=False).replace("%", "%%"))
    cfg.attributes["engine"] = engine
    return cfg


def head_revision(engine: Engine) -> str:
    heads = ScriptDirectory.from_config(alembic_config(engine)).get_heads()
    if len(heads) != 1:
        raise RuntimeError(f"migrations must have exactly one head, found {heads}")
    return heads[0]


def known_revision(engine: Engine, revision: str) -> bool:
    """Whether ``revision`` is one of this registry's migrations (a newer registry may have written another)."""
    return any(s.revision == revision for s in ScriptDirectory.from_config(alembic_config(engine)).walk_revisions())


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def is_empty(engine: Engine) -> bool:
    """No tables at all. A database that still has ``alembic_version`` (e.g. downgraded to base) was
    migrated before: it is out of date, not fresh, and is refused rather than silently re-created."""
    return not inspect(engine).get_table_names()


def upgrade(engine: Engine, revision: str = "head") -> None:
    command.upgrade(alembic_config(engine), revision)


def downgrade(engine: Engine, revision: str) -> None:
    command.downgrade(alembic_config(engine), revision)


def drift(engine: Engine) -> list[Any]:
    """Differences between the models and the migrated database (empty list: none)."""
    import registry.catalog.models  # noqa: F401  (registers the tables on Base.metadata; else all look dropped)

    with engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"compare_type": True, "compare_server_default": False})
        return list(compare_metadata(ctx, Base.metadata))


# an arbitrary constant: the advisory lock that serialises first use of a Postgres catalog
_PG_FIRST_USE_LOCK = 0x72656769  # "regi"


@contextlib.contextmanager
def first_use_lock(engine: Engine) -> Iterator[None]:
    """Serialise the first migration of a catalog across processes (and hosts, on Postgres)."""
    if engine.dialect.name == "postgresql":
        with engine.connect() as conn:
            conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": _PG_FIRST_USE_LOCK})
            conn.commit()
            try:
                yield
            finally:
                conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": _PG_FIRST_USE_LOCK})
                conn.commit()
        return
    database = engine.url.database
    if engine.dialect.name != "sqlite" or not database or database == ":memory:":
        yield
        return
    lock_path = Path(database).with_name(Path(database).name + ".migrate.lock")
    with open(lock_path, "a+b") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
