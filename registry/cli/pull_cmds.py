"""pull."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from registry.errors import UsageError
from registry.cli.base import (
    DeviceOpt, JsonOpt, NoSmokeOpt, app, finish_ingest, human_size, note, open_registry, plural, register_flag,
)
from registry.cli.sign_cmds import TrustOpt


def check_local_dir(path: Path) -> None:
    """--local-dir must be a new or empty folder: the registry never mixes a model into other files."""
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise UsageError(f"--local-dir {path} exists and is not an empty folder; remove it or choose another",
                         details={"local_dir": str(path)})


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
    include: Annotated[Optional[list[str]], typer.Option("--include", help="Also take the model's own files matching this glob, as optional files (repeatable).")] = None,
    exclude: Annotated[Optional[list[str]], typer.Option("--exclude", help="Leave out optional files matching this glob (repeatable); a required file is never dropped.")] = None,
    local_dir: Annotated[Optional[Path], typer.Option("--local-dir", help="Then write the model's own files into this plain folder, as `hf download --local-dir` does (recorded as a deployment).")] = None,
    max_workers: Annotated[int, typer.Option("--max-workers", min=1, help="Files downloaded at once.")] = 8,
    insecure: Annotated[bool, typer.Option("--insecure", help="oci:// only: plain HTTP, for a registry on loopback.")] = False,
    trust: TrustOpt = None,
    no_smoke: NoSmokeOpt = False,
    device: DeviceOpt = "auto",
    json_out: JsonOpt = False,
) -> None:
    """Pull a complete, verified snapshot (with its base and other dependencies) into the store and catalog."""
    if repo_id.startswith("oci://"):
        from registry.cli.oci_cmds import pull_oci_cmd, refuse_hub_options

        refuse_hub_options(revision=revision, endpoint=endpoint, token=token, manifest=manifest, include=include,
                           exclude=exclude, local_dir=local_dir)
        pull_oci_cmd(repo_id, insecure=insecure, retries=retries, backoff=backoff, no_smoke=no_smoke, device=device,
                     json_out=json_out)
        return
    if insecure:
        raise UsageError("--insecure applies to oci:// references only")
    from registry.cli.progress import progress_bars
    from registry.services.pull import pull

    reg = open_registry(trust_file=trust)
    if local_dir is not None:
        check_local_dir(local_dir)  # before any byte is fetched
    result = pull(reg, repo_id, revision=revision, manifest_file=manifest, endpoint=endpoint, token=token,
                  progress=progress_bars(), retries=retries, backoff=backoff, workers=max_workers,
                  register=register_flag(no_smoke), device=device, include=include or (), exclude=exclude or ())
    if result.note:
        note(result.note)
    extra = {}
    if local_dir is not None:
        from registry.services.deploy import deploy

        placed = deploy(reg, f"{result.name}@{result.commit}", local_dir, layout="dir", unregistered=True)
        note(f"wrote {placed.path}: {plural(sum(r.files for r in placed.repos), 'file')} of {result.name} "
             f"({human_size(sum(r.bytes for r in placed.repos))}), recorded as deployment {placed.deployment_id}")
        extra["local_dir"] = placed
    finish_ingest(result, json_out=json_out, extra=extra,
                  detail=(f"{result.files} files, {human_size(result.bytes)}; downloaded {result.downloaded_files} "
                          f"({human_size(result.downloaded_bytes)}), {result.reused_files} already in the store"
                          f"{f', {result.resumed_files} resumed' if result.resumed_files else ''}"))
