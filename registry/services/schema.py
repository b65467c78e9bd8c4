"""``registry db upgrade | current | check``: the catalog schema's state, as frozen results."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from sqlalchemy import Engine

from registry.config import Settings
from registry.errors import SchemaOutOfDate, StorageError


@dataclass(frozen=True)
class SchemaStatus:
    current: str | None
    head: str
    drift: tuple[str, ...]  # differences between the models and the tables (only checked at head)

    @property
    def up_to_date(self) -> bool:
        return self.current == self.head

    @property
    def ok(self) -> bool:
        return self.up_to_date and not self.drift


@dataclass(frozen=True)
class UpgradeResult:
    before: str | None
    after: str | None


@contextmanager
def _engine(settings: Settings) -> Iterator[Engine]:
    """The catalog's engine, with connection and alembic failures turned into registry errors."""
    from alembic.util import CommandError
    from sqlalchemy.exc import OperationalError

    from registry.catalog.engine import create_catalog_engine

    engine = create_catalog_engine(settings.database_url)
    try:
        yield engine
    except OperationalError as exc:
        raise StorageError(f"cannot reach the catalog at {engine.url.render_as_string()}: {exc.orig}; "
                           "check REGISTRY_DATABASE_URL") from exc
    except CommandError as exc:
        # e.g. the database is stamped with a revision this registry's migrations do not contain
        raise SchemaOutOfDate(f"cannot migrate the catalog: {exc}; a newer registry may have migrated it: "
                              "upgrade this registry's package, then run: registry db upgrade") from exc
    finally:
        engine.dispose()


def upgrade_schema(settings: Settings, revision: str = "head") -> UpgradeResult:
    from registry.catalog import migrate

    with _engine(settings) as engine:
        before = migrate.current_revision(engine)
        migrate.upgrade(engine, revision)
        return UpgradeResult(before, migrate.current_revision(engine))


def schema_status(settings: Settings, *, check_drift: bool = False) -> SchemaStatus:
    from registry.catalog import migrate

    with _engine(settings) as engine:
        current, head = migrate.current_revision(engine), migrate.head_revision(engine)
        drift = tuple(str(d) for d in migrate.drift(engine)) if check_drift and current == head else ()
        return SchemaStatus(current, head, drift)
