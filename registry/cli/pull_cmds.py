"""pull."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from registry.errors import UsageError
from registry.cli.base import (
    DeviceOpt, JsonOpt, NoSmokeOpt, app, finish_ingest, human_size, note, open_registry, register_flag,
)


@app.command("pull")
def pull_cmd(
    repo_id: Annotated[str, typer.Argument(help="The model's repo id, e.g. vidore/colqwen2-v0.1, or an OCI artifact: "
                                             "oci://HOST[:PORT]/REPO[:TAG|@sha256:...] (docs/oci.md).")],
    revision: Annotated[Optional[str], typer.Option("--revision", help="Branch, tag or commit; default main.")] = None,
    endpoint: Annotated[Optional[str], typer.Option("--endpoint", help="Hub or mirror URL; default HF_ENDPOINT, else the Hub.")] = None,
    token: Annotated[Optional[str], typer.Option("--token", help="Access token; default HF_TOKEN.")] = None,
    manifest: Annotated[Optional[Path], typer.Option("--manifest", help="Use this manifest instead of the curated or inferred one.")] = None,
    retries: Annotated[int, typer.Option("--retries", help="Retries per file after a dropped connection or a 5xx.")] = 5,
    backoff: Annotated[float, typer.Option("--backoff", help="First retry delay in seconds (doubles each time).", hidden=True)] = 1.0,
    insecure: Annotated[bool, typer.Option("--insecure", help="oci:// only: plain HTTP, for a registry on loopback.")] = False,
    no_smoke: NoSmokeOpt = False,
    device: DeviceOpt = "auto",
    json_out: JsonOpt = False,
) -> None:
    """Pull a complete, verified snapshot (with its base and other dependencies) into the store and catalog."""
    if repo_id.startswith("oci://"):
        from registry.cli.oci_cmds import pull_oci_cmd, refuse_hub_options

        refuse_hub_options(revision=revision, endpoint=endpoint, token=token, manifest=manifest)
        pull_oci_cmd(repo_id, insecure=insecure, retries=retries, backoff=backoff, no_smoke=no_smoke, device=device,
                     json_out=json_out)
        return
    if insecure:
        raise UsageError("--insecure applies to oci:// references only")
    from registry.cli.progress import progress_bars
    from registry.services.pull import pull

    result = pull(open_registry(), repo_id, revision=revision, manifest_file=manifest, endpoint=endpoint, token=token,
                  progress=progress_bars(), retries=retries, backoff=backoff, register=register_flag(no_smoke),
                  device=device)
    if result.note:
        note(result.note)
    finish_ingest(result, json_out=json_out,
                  detail=(f"{result.files} files, {human_size(result.bytes)}; downloaded {result.downloaded_files} "
                          f"({human_size(result.downloaded_bytes)}), {result.reused_files} already in the store"
                          f"{f', {result.resumed_files} resumed' if result.resumed_files else ''}"))
