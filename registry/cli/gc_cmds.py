"""registry gc."""

from __future__ import annotations

from typing import Annotated

import typer

from registry.cli.base import JsonOpt, app, echo, emit_json, human_size, open_registry, plural


@app.command("gc")
def gc_cmd(
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Say what would be removed; remove nothing.")] = False,
    grace: Annotated[float, typer.Option("--grace", min=0, help="Keep files younger than this many seconds "
                                         "(a pull may still be writing them).")] = 3600.0,
    json_out: JsonOpt = False,
) -> None:
    """Remove blobs that no catalog entry references, and leftovers of interrupted writes."""
    from registry.services.gc import collect_garbage

    result = collect_garbage(open_registry(), dry_run=dry_run, grace_seconds=grace)
    if json_out:
        emit_json(result)
        return
    verb = "would remove" if dry_run else "removed"
    echo(f"{verb} {plural(len(result.blobs_removed), 'unreferenced blob')} and "
         f"{plural(len(result.stray_removed), 'temp/partial file')}, "
         f"{human_size(result.bytes_freed)}; kept {result.kept_young} younger than {grace:.0f} s")
