"""Engines and sessions. SQLite gets WAL, foreign keys and a busy timeout; Postgres uses psycopg 3."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from registry.errors import SchemaOutOfDate, StorageError

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


def open_catalog(url: str, *, migrate_fresh: bool = True) -> Catalog:
    """Open the catalog; a fresh database is migrated, an out-of-date one refused."""
    from registry.catalog import migrate  # alembic is slow to import; only here

    engine = create_catalog_engine(url)
    try:
        current = migrate.current_revision(engine)
        head = migrate.head_revision(engine)
        if current is None and migrate.is_empty(engine) and migrate_fresh:
            migrate.upgrade(engine)
        elif current is not None and current != head and not migrate.known_revision(engine, current):
            raise SchemaOutOfDate(
                f"the catalog schema is at revision {current!r}, which this registry does not know (was it migrated "
                f"by a newer registry?); upgrade this registry's package, then run: registry db upgrade",
                details={"current": current, "head": head},
            )
        elif current != head:
            raise SchemaOutOfDate(
                f"the catalog schema is at {current or 'base (no tables)'}, this registry needs {head}; "
                "run: registry db upgrade",
                details={"current": current, "head": head},
            )
    except OperationalError as exc:
        raise StorageError(f"cannot open the catalog at {engine.url.render_as_string()}: {exc.orig}") from exc
    return Catalog(engine)
