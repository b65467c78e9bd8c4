"""serve / export / import / deploy: the offline-mirror commands (audit: cli/audit_cmds.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from registry.cli.base import JsonOpt, app, echo, emit_json, human_size, note, open_registry, plural, table
from registry.cli.sign_cmds import TrustOpt


@app.command("serve")
def serve_cmd(
    host: Annotated[str, typer.Option("--host", help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="Port to listen on.")] = 8080,
    token_file: Annotated[Optional[Path], typer.Option("--token-file", help="TOML file of bearer tokens and the repo globs they may read (see docs/mirror.md).")] = None,
    access_log: Annotated[bool, typer.Option("--access-log", help="Log every request to stderr.")] = False,
    keep_alive: Annotated[float, typer.Option("--keep-alive", min=0.1, help="Seconds an idle keep-alive connection stays open.")] = 30.0,
    trust: TrustOpt = None,
) -> None:
    """Serve registered models over the Hub's HTTP API (point clients at it with HF_ENDPOINT)."""
    from registry.server import TokenPolicy, create_app
    from registry.server.listen import bind, run_server

    policy = TokenPolicy.load(token_file) if token_file else TokenPolicy.open()
    reg = open_registry(trust_file=trust)
    sock = bind(host, port)  # before saying "serving": a busy port is a clear error, not a late exit
    app_ = create_app(reg, policy)
    served = app_.mirror.served_model_count()
    note(f"serving {served} registered model{'' if served == 1 else 's'} of {reg.settings.home} on "
         f"http://{host}:{port} ({'tokens from ' + str(token_file) if token_file else 'no auth'}); "
         f"set HF_ENDPOINT=http://{host}:{port}")
    if not served:
        note("warning: no registered models yet, so every repo answers 404: register one with "
             "`registry register NAME` (or add/pull it with the ML extras installed)")
    run_server(app_, sock, access_log=access_log, keep_alive=keep_alive)


@app.command("export")
def export_cmd(
    names: Annotated[list[str], typer.Argument(help="Models to export (NAME or NAME@REVISION); their bases come along.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="A new folder, or a file ending in .tar.")],
    json_out: JsonOpt = False,
) -> None:
    """Write a bundle (manifests, catalog records, smoke runs, lineage and blobs) for an air-gapped site."""
    from registry.services.bundle import export_bundle

    result = export_bundle(open_registry(), names, output)
    if json_out:
        emit_json(result)
        return
    echo(f"wrote {result.path} ({result.format}): {plural(len(result.models), 'model')}, {plural(result.blobs, 'blob')}, "
         f"{human_size(result.bytes)}")
    echo(table(["name", "commit", "state", "files", "size"],
               [(m.name, m.commit[:12], m.state, m.files, human_size(m.bytes)) for m in result.models]))


@app.command("import")
def import_cmd(
    path: Annotated[Path, typer.Argument(help="A bundle folder or .tar written by `registry export`.")],
    trust: TrustOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Verify every byte of a bundle, then record its models (blobs already in the store are skipped)."""
    from registry.services.bundle import import_bundle

    result = import_bundle(open_registry(trust_file=trust), path)
    if json_out:
        emit_json(result)
        return
    echo(f"imported {len(result.models)} models from {result.path}: {result.blobs_written} blobs written "
         f"({human_size(result.bytes_written)}), {result.blobs_skipped} already present")
    echo(table(["name", "commit", "state", "files", "size"],
               [(m.name, m.commit[:12], m.state, m.files, human_size(m.bytes)) for m in result.models]))
    for line in result.disagreements:
        echo(f"note: {line}")


@app.command("deploy")
def deploy_cmd(
    name: Annotated[str, typer.Argument(help="NAME or NAME@REVISION of a registered model.")],
    target: Annotated[Path, typer.Option("--target", help="An HF cache root (hf-cache) or a new folder (dir).")],
    layout: Annotated[str, typer.Option("--layout", help="hf-cache (models--org--name/...) or dir (a plain folder).")] = "hf-cache",
    node: Annotated[Optional[str], typer.Option("--node", help="Node name recorded for the audit (default: this host).")] = None,
    as_base: Annotated[bool, typer.Option("--as-base", help="Deploy a base (base_only in its manifest) as a model "
                                                            "itself; without it a base is refused.")] = False,
    trust: TrustOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Materialise a registered model on this node and record the deployment."""
    from registry.services.deploy import deploy

    result = deploy(open_registry(trust_file=trust), name, target, layout=layout, node=node, as_base=as_base)
    if json_out:
        emit_json(result)
        return
    if result.cleaned:
        echo(f"removed {len(result.cleaned)} leftover(s) of a deploy that was killed: " + ", ".join(result.cleaned[:20]))
    if result.adopted:
        echo(f"{result.path} already held exactly this model's files (a deploy killed before it recorded them): "
             "recorded it as it is")
    if result.repaired:
        echo(f"repaired the recorded copy at {result.path} ({len(result.repaired)} change(s), in the deploy event):")
        for line in result.repaired[:50]:
            echo(f"  {line}")
    echo(f"deployed {result.name}@{result.commit[:12]} to {result.path} ({result.layout}, node {result.node}); "
         f"root digest {result.root_digest}")
    echo(table(["repo", "commit", "files", "size", "linked", "copied", "reused"],
               [(r.repo_id, r.commit[:12], r.files, human_size(r.bytes), r.linked, r.copied, r.reused)
                for r in result.repos]))
    for repo in result.signed:
        echo(f"model.sig written for {repo} (check it with `model_signing verify key`)")
    if result.layout == "hf-cache":
        echo(f"load with: HF_HUB_OFFLINE=1 HF_HUB_CACHE={result.target}")
    for repo in result.not_included:
        note(f"note: {repo} is not in a dir deployment; deploy it too, or use --layout hf-cache")

