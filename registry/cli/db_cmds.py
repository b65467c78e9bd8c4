"""registry db upgrade | current | check."""

from __future__ import annotations

from typing import Annotated

import typer

from registry.cli.base import JsonOpt, db_app, echo, emit_json, exit_reported
from registry.config import Settings
from registry.errors import SchemaOutOfDate


@db_app.command("upgrade")
def upgrade_cmd(revision: Annotated[str, typer.Argument(help="Target revision.")] = "head", json_out: JsonOpt = False) -> None:
    """Migrate the catalog schema (default: to the newest revision)."""
    from registry.services.schema import upgrade_schema

    result = upgrade_schema(Settings.from_env(), revision)
    if json_out:
        emit_json({"from": result.before, "to": result.after})
    else:
        echo(f"catalog schema: {result.before or 'empty'} -> {result.after}")


@db_app.command("current")
def current_cmd(json_out: JsonOpt = False) -> None:
    """Print the catalog's schema revision and the newest one this registry knows."""
    from registry.services.schema import schema_status

    s = schema_status(Settings.from_env())
    if json_out:
        emit_json({"current": s.current, "head": s.head, "up_to_date": s.up_to_date})
    else:
        echo(f"current: {s.current or 'empty'}  head: {s.head}{'' if s.up_to_date else '  (run: registry db upgrade)'}")


@db_app.command("check")
def check_cmd(json_out: JsonOpt = False) -> None:
    """Exit 0 when the schema is at head and matches the models; 6 otherwise."""
    from registry.services.schema import schema_status

    s = schema_status(Settings.from_env(), check_drift=True)
    if json_out:
        emit_json({"current": s.current, "head": s.head, "ok": s.ok, "drift": list(s.drift)})
    else:
        if s.ok:
            echo(f"schema ok: {s.current}")
        elif not s.up_to_date:
            echo(f"schema not ok: current {s.current or 'empty'}, head {s.head}; run: registry db upgrade")
        else:
            echo(f"schema not ok: the tables differ from the models (a migration is missing): {list(s.drift)}")
    if not s.ok:
        exit_reported(SchemaOutOfDate)
