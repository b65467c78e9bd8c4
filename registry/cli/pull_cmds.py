"""pull."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from registry.cli.base import (
    DeviceOpt, JsonOpt, NoSmokeOpt, app, echo, emit_json, human_size, jsonable, note, open_registry, register_after,
    table,
)


@app.command("pull")
def pull_cmd(
    repo_id: Annotated[str, typer.Argument(help="The model's repo id, e.g. vidore/colqwen2-v0.1.")],
    revision: Annotated[Optional[str], typer.Option("--revision", help="Branch, tag or commit; default main.")] = None,
    endpoint: Annotated[Optional[str], typer.Option("--endpoint", help="Hub or mirror URL; default HF_ENDPOINT, else the Hub.")] = None,
    token: Annotated[Optional[str], typer.Option("--token", help="Access token; default HF_TOKEN.")] = None,
    manifest: Annotated[Optional[Path], typer.Option("--manifest", help="Use this manifest instead of the curated or inferred one.")] = None,
    retries: Annotated[int, typer.Option("--retries", help="Retries per file after a dropped connection or a 5xx.")] = 5,
    backoff: Annotated[float, typer.Option("--backoff", help="First retry delay in seconds (doubles each time).", hidden=True)] = 1.0,
    no_smoke: NoSmokeOpt = False,
    device: DeviceOpt = "auto",
    json_out: JsonOpt = False,
) -> None:
    """Pull a complete, verified snapshot (with its base and other dependencies) into the store and catalog."""
    from registry.fetch.progress import NullProgress, TqdmProgress
    from registry.services.pull import pull

    reg = open_registry()
    progress = TqdmProgress() if sys.stderr.isatty() else NullProgress()
    result = pull(reg, repo_id, revision=revision, manifest_file=manifest, endpoint=endpoint, token=token,
                  progress=progress, retries=retries, backoff=backoff)
    if result.note:
        note(result.note)
    registration = register_after(reg, result.name, result.commit, no_smoke=no_smoke, device=device)
    state = registration["state"] or result.state
    if json_out:
        emit_json({**jsonable(result), "state": state, "registration": registration})
        return
    echo(f"{result.name}@{result.commit[:12]} ({result.revision}): {state}, family {result.family}"
         f"{' (inferred manifest)' if result.inferred else ''}")
    echo(f"root digest {result.root_digest}; {result.files} files, {human_size(result.bytes)}; downloaded "
         f"{result.downloaded_files} ({human_size(result.downloaded_bytes)}), {result.reused_files} already in the store"
         f"{f', {result.resumed_files} resumed' if result.resumed_files else ''}")
    echo(table(["role", "repo", "commit", "files", "size", "pinned"],
               [(c.role, c.repo, c.commit[:12], c.files, human_size(c.bytes), "yes" if c.pinned else "no")
                for c in result.components]))
    if result.pickles:
        echo(f"pickle files (loaded only with torch.load(weights_only=True)): {', '.join(result.pickles)}")
