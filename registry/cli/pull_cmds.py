"""pull."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from registry.cli.base import (
    DeviceOpt, JsonOpt, NoSmokeOpt, app, finish_ingest, human_size, note, open_registry,
)
from registry.cli.sign_cmds import TrustOpt


@app.command("pull")
def pull_cmd(
    repo_id: Annotated[str, typer.Argument(help="The model's repo id, e.g. vidore/colqwen2-v0.1.")],
    revision: Annotated[Optional[str], typer.Option("--revision", help="Branch, tag or commit; default main.")] = None,
    endpoint: Annotated[Optional[str], typer.Option("--endpoint", help="Hub or mirror URL; default HF_ENDPOINT, else the Hub.")] = None,
    token: Annotated[Optional[str], typer.Option("--token", help="Access token; default HF_TOKEN.")] = None,
    manifest: Annotated[Optional[Path], typer.Option("--manifest", help="Use this manifest instead of the curated or inferred one.")] = None,
    retries: Annotated[int, typer.Option("--retries", help="Retries per file after a dropped connection or a 5xx.")] = 5,
    backoff: Annotated[float, typer.Option("--backoff", help="First retry delay in seconds (doubles each time).", hidden=True)] = 1.0,
    trust: TrustOpt = None,
    no_smoke: NoSmokeOpt = False,
    device: DeviceOpt = "auto",
    json_out: JsonOpt = False,
) -> None:
    """Pull a complete, verified snapshot (with its base and other dependencies) into the store and catalog."""
    from registry.cli.progress import progress_bars
    from registry.services.pull import pull

    reg = open_registry(trust_file=trust)
    progress = progress_bars()
    result = pull(reg, repo_id, revision=revision, manifest_file=manifest, endpoint=endpoint, token=token,
                  progress=progress, retries=retries, backoff=backoff)
    if result.note:
        note(result.note)
    finish_ingest(reg, result, no_smoke=no_smoke, device=device, json_out=json_out,
                  detail=(f"{result.files} files, {human_size(result.bytes)}; downloaded {result.downloaded_files} "
                          f"({human_size(result.downloaded_bytes)}), {result.reused_files} already in the store"
                          f"{f', {result.resumed_files} resumed' if result.resumed_files else ''}"))
