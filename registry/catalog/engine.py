"""Engines and sessions. SQLite gets WAL, foreign keys and a busy timeout; Postgres uses psycopg 3."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError, ProgrammingError
from sqlalchemy.orm import Session, sessionmaker

from registry.errors import CatalogDamaged, CatalogNotFound, RegistryError, SchemaOutOfDate, StorageError

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

        _translate_errors(engine)
        return engine
    engine = create_engine(url, pool_pre_ping=True)
    _translate_errors(engine)
    return engine


# What the database says when the catalog itself is damaged, or its disk is full. SQLite: the messages of
# SQLITE_NOTADB, SQLITE_CORRUPT, SQLITE_FULL and SQLITE_IOERR; Postgres: SQLSTATE classes 53 (insufficient
# resources) and XX001/XX002 (data or index corrupted), and 42P01 (a table that is not there).
_SQLITE_DAMAGED = ("file is not a database", "database disk image is malformed", "malformed database schema")
_SQLITE_FULL = ("database or disk is full",)
_MISSING_TABLE = ("no such table", "does not exist")


def _translate_errors(engine: Engine) -> None:
    """Every database error of this engine that means "the catalog file is damaged" or "the disk is full"
    becomes a clear registry error naming the catalog and what to do (never a traceback)."""

    @event.listens_for(engine, "handle_error")
    def _handle(ctx) -> None:  # type: ignore[no-untyped-def]
        error = catalog_error(engine, ctx.original_exception)
        if error is not None:
            raise error from ctx.original_exception


def catalog_error(engine: Engine, exc: BaseException) -> RegistryError | None:
    """The registry error for a database error that is the catalog's own fault (damage, a full disk), else None
    (a lock timeout, a unique-key race: the caller's to handle)."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    lowered = text.lower()
    sqlstate = str(getattr(exc, "sqlstate", "") or "")
    where = _where(engine)
    if any(m in lowered for m in _SQLITE_FULL) or sqlstate.startswith("53") or getattr(exc, "errno", None) == 28:
        return StorageError(
            f"no space left for the catalog {where} ({text}); free space on its disk and run the command again "
            "(the transaction was rolled back: nothing partial was recorded)",
            details={"url": _url(engine), "reason": text})
    missing = ("no such table" in lowered or ("relation" in lowered and "does not exist" in lowered)
               or sqlstate == "42P01")
    if missing and "alembic_version" not in lowered:
        return CatalogDamaged(
            f"the catalog {where} is damaged: {text} (its schema is stamped current, but a table is gone); restore "
            "the catalog from a backup (or point REGISTRY_DATABASE_URL at a good one). The store's blobs are "
            "untouched",
            details={"url": _url(engine), "reason": text})
    if any(m in lowered for m in _SQLITE_DAMAGED) or sqlstate in ("XX001", "XX002"):
        return CatalogDamaged(
            f"the catalog {where} is damaged ({text}): it is not a readable SQLite catalog any more (overwritten, "
            "truncated or corrupted). Restore it from a backup; the store's blobs are untouched. Moving the file "
            "aside starts an empty catalog, which does not know the stored models",
            details={"url": _url(engine), "reason": text})
    return None


def _url(engine: Engine) -> str:
    return engine.url.render_as_string()


def _where(engine: Engine) -> str:
    if engine.dialect.name == "sqlite":
        return f"file {engine.url.database}"
    return f"database {engine.url.database!r} on {engine.url.host or 'localhost'}"


class Catalog:
    """An engine whose schema is known to be at the migrations' head."""

    def __init__(self, engine: Engine, *, created: bool = False) -> None:
        self.engine = engine
        self.created = created  # this process created (first-migrated) the catalog just now
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
    created = False
    try:
        if _stamped_revision(engine) != SCHEMA_HEAD:
            created = _check_or_migrate(engine, migrate_fresh=migrate_fresh)
    except OperationalError as exc:
        raise _unreachable(engine, exc) from exc
    return Catalog(engine, created=created)


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


def _check_or_migrate(engine: Engine, *, migrate_fresh: bool) -> bool:
    """The slow path: migrate a fresh catalog (returns True), or explain why this one is refused.

    Runs under a lock so that two commands starting at once on a new home take turns: the second one
    waits, then finds the schema at head instead of a half-created one.
    """
    from registry.catalog import migrate  # alembic is slow to import; only here

    with migrate.first_use_lock(engine):
        current = migrate.current_revision(engine)
        head = migrate.head_revision(engine)
        if current == head:
            return False  # another process migrated it while we waited
        if current is None and migrate.is_empty(engine) and migrate_fresh:
            migrate.upgrade(engine)
            return True
        if current is not None and not migrate.known_revision(engine, current):
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
