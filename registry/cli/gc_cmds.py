"""registry gc: plan, then execute (--dry-run prints the plan)."""

from __future__ import annotations

from typing import Annotated

import typer

from registry.cli.base import JsonOpt, app, echo, emit_json, human_size, note, open_registry, plural, table


@app.command("gc")
def gc_cmd(
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the plan gc would execute; remove nothing.")] = False,
    grace: Annotated[float, typer.Option("--grace", min=0, help="Keep files younger than this many seconds "
                                         "(a writer that holds no lease may still be at work).")] = 3600.0,
    json_out: JsonOpt = False,
) -> None:
    """Remove blobs that no model, deployment or running pull/import/export references, and leftovers of
    interrupted writes: a plan first, then its execution."""
    from registry.services.gc import collect_garbage

    result = collect_garbage(open_registry(), dry_run=dry_run, grace_seconds=grace)
    if json_out:
        emit_json(result)
        return
    plan = result.plan
    if plan.actions:
        echo(table(["action", "what", "size", "age", "why"],
                   [(f"remove {a.kind}", a.sha256 or a.path, human_size(a.size), f"{a.age_s / 3600:.1f} h", a.reason)
                    for a in plan.actions]))
    kept = {}
    for k in plan.kept:
        kept[k.reason] = kept.get(k.reason, 0) + 1
    for reason, n in sorted(kept.items()):
        note(f"keeping {plural(n, 'file')}: {reason}")
    if dry_run:
        echo(f"plan: remove {plural(sum(a.kind == 'blob' for a in plan.actions), 'unreferenced blob')} and "
             f"{plural(sum(a.kind != 'blob' for a in plan.actions), 'leftover')}, {human_size(plan.bytes_to_free)}; "
             "nothing was removed (--dry-run)")
        return
    echo(f"removed {plural(len(result.blobs_removed), 'unreferenced blob')} and "
         f"{plural(len(result.stray_removed), 'temp/partial file')}, "
         f"{human_size(result.bytes_freed)}; kept {result.kept_young} younger than {grace:.0f} s"
         + (f", {result.kept_leased} claimed by running operations" if result.kept_leased else "")
         + (f"; {plural(len(result.skipped), 'planned removal')} skipped (referenced or claimed meanwhile)"
            if result.skipped else ""))
