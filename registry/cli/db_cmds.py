"""registry db upgrade | current | check."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated

import typer

from registry.cli.base import JsonOpt, db_app, echo, emit_json
from registry.config import Settings
from registry.errors import SchemaOutOfDate, StorageError


@contextmanager
def _engine() -> Iterator:
    """The catalog's engine, with connection and alembic failures turned into registry errors."""
    from alembic.util import CommandError
    from sqlalchemy.exc import OperationalError

    from registry.catalog.engine import create_catalog_engine

    engine = create_catalog_engine(Settings.from_env().database_url)
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


@db_app.command("upgrade")
def upgrade_cmd(revision: Annotated[str, typer.Argument(help="Target revision.")] = "head", json_out: JsonOpt = False) -> None:
    """Migrate the catalog schema (default: to the newest revision)."""
    from registry.catalog import migrate

    with _engine() as engine:
        before = migrate.current_revision(engine)
        migrate.upgrade(engine, revision)
        after = migrate.current_revision(engine)
    if json_out:
        emit_json({"from": before, "to": after})
    else:
        echo(f"catalog schema: {before or 'empty'} -> {after}")


@db_app.command("current")
def current_cmd(json_out: JsonOpt = False) -> None:
    """Print the catalog's schema revision and the newest one this registry knows."""
    from registry.catalog import migrate

    with _engine() as engine:
        current, head = migrate.current_revision(engine), migrate.head_revision(engine)
    if json_out:
        emit_json({"current": current, "head": head, "up_to_date": current == head})
    else:
        echo(f"current: {current or 'empty'}  head: {head}{'' if current == head else '  (run: registry db upgrade)'}")


@db_app.command("check")
def check_cmd(json_out: JsonOpt = False) -> None:
    """Exit 0 when the schema is at head and matches the models; 6 otherwise."""
    from registry.catalog import migrate

    with _engine() as engine:
        current, head = migrate.current_revision(engine), migrate.head_revision(engine)
        diffs = [str(d) for d in migrate.drift(engine)] if current == head else []
    ok = current == head and not diffs
    if json_out:
        emit_json({"current": current, "head": head, "ok": ok, "drift": diffs})
    else:
        if ok:
            echo(f"schema ok: {current}")
        elif current != head:
            echo(f"schema not ok: current {current or 'empty'}, head {head}; run: registry db upgrade")
        else:
            echo(f"schema not ok: the tables differ from the models (a migration is missing): {diffs}")
    if not ok:
        raise SchemaOutOfDate(f"catalog schema is {current or 'empty'}, head is {head}; run: registry db upgrade",
                              details={"reported": True})
