"""registry undeploy: remove a deployment the registry wrote and recorded."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from registry.cli.base import JsonOpt, app, echo, emit_json, note, open_registry, plural


@app.command("undeploy")
def undeploy_cmd(
    name: Annotated[str, typer.Argument(help="NAME or NAME@REVISION of a deployed model.")],
    target: Annotated[Path, typer.Option("--target", help="The --target it was deployed to (an HF cache root or the folder).")],
    node: Annotated[Optional[str], typer.Option("--node", help="The node it was recorded on (default: this host).")] = None,
    force: Annotated[bool, typer.Option("--force", help="Remove the deployed files even if they were changed; for a target replaced by a symlink or a file, only drop the record.")] = False,
    json_out: JsonOpt = False,
) -> None:
    """Remove a deployment recorded by `registry deploy` (refused for a target it did not write)."""
    from registry.services.undeploy import undeploy

    result = undeploy(open_registry(), name, target, node=node, force=force)
    if json_out:
        emit_json(result)
        return
    what = "was already gone" if result.already_gone else f"{plural(len(result.removed), 'file')} and folders removed"
    echo(f"undeployed {result.name}@{result.commit[:12]} from {result.path} (node {result.node}): {what}")
    for item in result.kept[:20]:
        note(f"kept: {item}")
    if len(result.kept) > 20:
        note(f"kept {len(result.kept) - 20} more (see --json)")
