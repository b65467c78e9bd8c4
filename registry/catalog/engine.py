"""Engines and sessions. SQLite gets WAL, foreign keys and a busy timeout; Postgres uses psycopg 3."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError, ProgrammingError
from sqlalchemy.orm import Session, sessionmaker

from registry.errors import CatalogNotFound, RegistryError, SchemaOutOfDate, StorageError

SQLITE_BUSY_TIMEOUT_MS = 30_000
READ_ONLY_OPTION = "registry_read_only"


def create_catalog_engine(url: str) -> Engine:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn, _record) -> None:  # type: ignore[no-untyped-def]
            # Let SQLAlchemy, not pysqlite, open transactions, and take the write lock at BEGIN:
            # two writers then queue on busy_timeout instead of failing with "database is locked".
            dbapi_conn.isolation_level = None
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.close()

        @event.listens_for(engine, "begin")
        def _sqlite_begin(conn) -> None:  # type: ignore[no-untyped-def]
            # Readers take a deferred BEGIN so a mirror never waits behind a writer (WAL lets them read).
            read_only = conn.get_execution_options().get(READ_ONLY_OPTION, False)
            conn.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")

        return engine
    return create_engine(url, pool_pre_ping=True)


class Catalog:
    """An engine whose schema is known to be at the migrations' head."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._sessions = sessionmaker(engine, expire_on_commit=False)
        self._read_sessions = sessionmaker(engine.execution_options(**{READ_ONLY_OPTION: True}),
                                           expire_on_commit=False)

    @contextmanager
    def session(self) -> Iterator[Session]:
        """One transaction: committed on success, rolled back (nothing recorded) on any error."""
        with self._sessions() as session, session.begin():
            yield session

    @contextmanager
    def reader(self) -> Iterator[Session]:
        """A read-only session; on SQLite it never takes the write lock."""
        with self._read_sessions() as session:
            yield session


# The migrations' head. Checked on every command with one query against this constant (alembic is slow to
# import); tests/test_migrations.py asserts it equals alembic's head, so a new migration must update it.
SCHEMA_HEAD = "0005"


def open_catalog(url: str, *, migrate_fresh: bool = True) -> Catalog:
    """Open the catalog; a fresh database is migrated, an out-of-date one refused."""
    engine = create_catalog_engine(url)
    try:
        if _stamped_revision(engine) != SCHEMA_HEAD:
            _check_or_migrate(engine, migrate_fresh=migrate_fresh)
    except OperationalError as exc:
        raise _unreachable(engine, exc) from exc
    return Catalog(engine)


def _stamped_revision(engine: Engine) -> str | None:
    """The revision the catalog is stamped with, or None when it has no alembic_version table (yet)."""
    try:
        with engine.connect() as conn:
            return conn.exec_driver_sql("SELECT version_num FROM alembic_version").scalar()
    except (OperationalError, ProgrammingError) as exc:
        if _is_missing_table(exc):
            return None
        raise


def _is_missing_table(exc: Exception) -> bool:
    text = str(getattr(exc, "orig", exc)).lower()
    return "no such table" in text or "does not exist" in text and "relation" in text


def _check_or_migrate(engine: Engine, *, migrate_fresh: bool) -> None:
    """The slow path: migrate a fresh catalog, or explain why this one is refused.

    Runs under a lock so that two commands starting at once on a new home take turns: the second one
    waits, then finds the schema at head instead of a half-created one.
    """
    from registry.catalog import migrate  # alembic is slow to import; only here

    with migrate.first_use_lock(engine):
        current = migrate.current_revision(engine)
        head = migrate.head_revision(engine)
        if current == head:
            return  # another process migrated it while we waited
        if current is None and migrate.is_empty(engine) and migrate_fresh:
            migrate.upgrade(engine)
        elif current is not None and not migrate.known_revision(engine, current):
            raise SchemaOutOfDate(
                f"the catalog schema is at revision {current!r}, which this registry does not know (was it migrated "
                f"by a newer registry?); upgrade this registry's package, then run: registry db upgrade",
                details={"current": current, "head": head},
            )
        else:
            raise SchemaOutOfDate(
                f"the catalog schema is at {current or 'base (no tables)'}, this registry needs {head}; "
                "run: registry db upgrade",
                details={"current": current, "head": head},
            )


def _unreachable(engine: Engine, exc: OperationalError) -> RegistryError:
    """A catalog that cannot be opened: a missing Postgres database is not found (3), the rest storage (10)."""
    where = engine.url.render_as_string()
    reason = str(exc.orig).strip().splitlines()[0] if exc.orig is not None else str(exc)
    database = engine.url.database
    if engine.dialect.name == "postgresql" and database and f'database "{database}" does not exist' in reason:
        return CatalogNotFound(
            f"the catalog database {database!r} does not exist on {engine.url.host or 'localhost'}: create it "
            f"(createdb {database}) or point REGISTRY_DATABASE_URL at an existing one",
            details={"url": where})
    return StorageError(f"cannot open the catalog at {where}: {reason}; check REGISTRY_DATABASE_URL and that the "
                        "database server is running", details={"url": where})
