"""registry history (alias: log): the event log, newest first."""

from __future__ import annotations

import json
from typing import Annotated, Optional

import typer

from registry.cli.base import JsonOpt, app, echo, emit_json, note, open_registry, table


def _details(details: dict) -> str:
    text = json.dumps(details, separators=(",", ":"), sort_keys=True, default=str)
    return text if len(text) <= 80 else text[:79] + "…"


def history_cmd(
    name: Annotated[Optional[str], typer.Argument(help="Only events about this model (or store, or a node for audits).")] = None,
    since: Annotated[Optional[str], typer.Option("--since", help="From this time on: 2026-05-01, 2026-05-01T12:00Z, or an age: 30m, 2h, 7d.")] = None,
    kind: Annotated[Optional[list[str]], typer.Option("--kind", help="Only these kinds (pull, add, register, quarantine, release, merge, export, import, deploy, undeploy, rm, verify, audit, gc, load); repeat for several.")] = None,
    node: Annotated[Optional[str], typer.Option("--node", help="Only events recorded by this node.")] = None,
    actor: Annotated[Optional[str], typer.Option("--actor", help="Only events by this user.")] = None,
    limit: Annotated[int, typer.Option("--limit", help="At most this many events (newest first).")] = 100,
    before: Annotated[Optional[int], typer.Option("--before", help="Only events older than this id (the next page).")] = None,
    json_out: JsonOpt = False,
) -> None:
    """The append-only event history: what happened, to what, by whom, on which host, when."""
    from registry.services.history import history, parse_since

    page = history(open_registry(), name=name, since=parse_since(since) if since is not None else None,
                   kinds=kind or [], node=node, actor=actor, limit=limit, before=before)
    if json_out:
        emit_json({"events": page.events, "older": page.older})
        return
    if page.events:
        echo(table(["id", "when (UTC)", "action", "subject", "actor", "host", "details"],
                   [(e.id, e.at.strftime("%Y-%m-%d %H:%M:%S"), e.action, e.subject, e.actor, e.host,
                     _details(e.details)) for e in page.events]))
    else:
        note("no events match")
    if page.older is not None:
        note(f"older events: add --before {page.older}")


app.command("history")(history_cmd)
app.command("log", hidden=True, help="Same as `registry history`.")(history_cmd)
