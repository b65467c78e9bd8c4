"""add / list / show / verify."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Annotated, Optional

import typer

from registry.cli.base import (
    DeviceOpt, JsonOpt, NoSmokeOpt, WideOpt, app, echo, emit_json, exit_reported, finish_ingest, human_size,
    note, open_registry, plural, register_flag, table,
)
from registry.cli.progress import progress_bars
from registry.cli.sign_cmds import IdentityOpt, IssuerOpt, TrustConfigOpt, keyless_signer
from registry.errors import UsageError, VerificationFailed


@app.command("add")
def add_cmd(
    path: Annotated[Path, typer.Argument(help="A model folder, or a snapshot folder of an HF cache.")],
    name: Annotated[str, typer.Option("--name", help="The model's repo id, e.g. org/name.")],
    revision: Annotated[Optional[str], typer.Option("--revision", help="A label (ref) for this revision; default main.")] = None,
    manifest: Annotated[Optional[Path], typer.Option("--manifest", help="Use this manifest instead of the curated or inferred one.")] = None,
    signature: Annotated[Optional[Path], typer.Option("--signature", help="A model_signing signature (model.sig) of the folder: checked, then recorded.")] = None,
    key: Annotated[Optional[Path], typer.Option("--key", help="With --signature: the signer's ECDSA public key (PEM).")] = None,
    identity: IdentityOpt = None,
    issuer: IssuerOpt = None,
    trust_config: TrustConfigOpt = None,
    no_smoke: NoSmokeOpt = False,
    device: DeviceOpt = "auto",
    json_out: JsonOpt = False,
) -> None:
    """Import a local model folder into the store and catalog, checked against its manifest, then register it."""
    from registry.services.add import add_folder

    reg = open_registry()
    keyless = keyless_signer(identity, issuer, trust_config)
    if signature is None and (key is not None or keyless is not None):
        raise UsageError("--key, --identity, --issuer and --trust-config check a --signature; give it too")
    if signature is not None:
        from registry.services.signing import add_signed

        signed = add_signed(reg, path, name, signature, key_path=key, keyless=keyless, revision=revision,
                            manifest_file=manifest, progress=progress_bars(), register=register_flag(no_smoke),
                            device=device)
        note(f"signature {signature} verified and recorded: {signed.files} files signed by "
             f"{signed.signer[:16] if signed.method == 'key' else signed.signer}")
        result = signed.added
    else:
        result = add_folder(reg, path, name, revision=revision, manifest_file=manifest, progress=progress_bars(),
                            register=register_flag(no_smoke), device=device)
    finish_ingest(result, json_out=json_out,
                  detail=f"{plural(result.files, 'file')}, {human_size(result.bytes)}, {plural(result.new_blobs, 'new blob')}")


@app.command("list")
def list_cmd(wide: WideOpt = False, json_out: JsonOpt = False) -> None:
    """List the models in the catalog."""
    from registry.services.listing import list_models

    models = list_models(open_registry())
    if json_out:
        emit_json({"models": models})
        return
    if not models:
        echo("no models yet: `registry pull ORG/NAME` or `registry add PATH --name ORG/NAME`")
        return
    echo(table(["name", "commit", "refs", "family", "state", "files", "size"],
               [(m.name, m.commit if wide else m.commit[:12], ",".join(m.refs), m.family, m.state, m.files,
                 human_size(m.bytes)) for m in models], wide=wide))


@app.command("show")
def show_cmd(name: Annotated[str, typer.Argument(help="NAME or NAME@REVISION")], wide: WideOpt = False,
             json_out: JsonOpt = False) -> None:
    """Show a model: components by role, files, sizes, digests, state, lineage, smoke runs."""
    from registry.services.listing import show_model

    d = show_model(open_registry(), name)
    if json_out:
        emit_json(d)
        return
    s = d.summary
    echo(f"{s.name}@{s.commit}  refs: {', '.join(s.refs) or '-'}")
    echo(f"state: {s.state}{' (' + s.state_reason + ')' if s.state_reason else ''}")
    source = d.manifest_source or "-"
    echo(f"family: {s.family}; manifest: {source}{' (inferred)' if s.inferred and source != 'inferred' else ''}")
    if s.base_only:
        echo(f"base only: a dependency{' of ' + ', '.join(d.base_of) if d.base_of else ''}; load and deploy "
             "refuse it as a model of its own unless --as-base is given")
    elif d.base_of:
        echo(f"base of: {', '.join(d.base_of)}")
    if d.family_rule:
        echo(d.family_rule)
    for disagreement in d.disagreements:
        echo(f"note: {disagreement}")
    if d.first_use:
        echo(f"digests taken on first use from {d.first_use_source or 'the source'} (not pinned by a manifest): "
             f"{plural(len(d.first_use), 'file')}")
    echo(f"root digest: {s.root_digest}; {plural(s.files, 'file')}, {human_size(s.bytes)}")
    cut = None if wide else 16
    for c in d.components:
        echo(f"\n[{c.role}] {c.repo}@{c.commit[:12]}{'' if c.required else ' (optional)'}"
             f"{' pinned' if c.pinned else ' unpinned'}")
        echo(table(["path", "size", "sha256", "blake3"],
                   [(f.path, human_size(f.size), f.sha256[:cut], f.blake3[:cut]) for f in c.files], wide=wide))
    if d.lineage:
        echo("\nlineage:")
        for l in d.lineage:
            echo(f"  {l.relation}: {l.repo}@{l.commit[:12]}{' (pinned)' if l.pinned else ' (unpinned)'}"
                 f"{' state ' + l.model_state if l.model_state else ''}")
    if d.smoke_runs:
        echo("\nsmoke runs:")
        for r in d.smoke_runs:
            echo(f"  {r.created_at} {'pass' if r.passed else 'FAIL'} {r.device} {r.dtype} {r.wall_ms:.0f} ms "
                 f"{(r.fingerprint or '')[:cut]} {r.error or ''}")


@app.command("verify")
def verify_cmd(
    names: Annotated[Optional[list[str]], typer.Argument(help="Models to verify (default: the whole catalog and store).")] = None,
    deep: Annotated[bool, typer.Option("--deep", help="Re-hash every blob with blake3 (ignores the stat cache).")] = False,
    json_out: JsonOpt = False,
) -> None:
    """Check that every file of the catalog is in the store with its recorded bytes. Exit 1 on any problem."""
    from registry.services.verify import verify

    report = verify(open_registry(), names or [], deep=deep, progress=progress_bars())
    if json_out:
        emit_json({"ok": report.ok, **dataclasses.asdict(report)})
    else:
        mode = "deep (blake3 of every blob)" if deep else "fast (stat cache)"
        echo(f"verified {plural(len(report.models_checked), 'model')}, {plural(report.files_checked, 'file')}, "
             f"{human_size(report.bytes_checked)}: {mode}, {plural(report.blobs_hashed, 'blob')} hashed")
        if report.problems:
            echo(table(["problem", "model", "repo", "path", "sha256", "reason"],
                       [(p.problem, p.model or "-", p.repo or "-", p.path or "-", p.sha256[:16], p.reason)
                        for p in report.problems]))
        if report.quarantined:
            echo(f"quarantined: {', '.join(report.quarantined)}")
        if report.released:
            echo(f"released (every blob intact again): {', '.join(report.released)}")
        if report.stray:
            echo(f"{plural(len(report.stray), 'temp/partial file')} from interrupted writes (removed by `registry gc`)")
        for line in report.notes:
            echo(f"note: {line}")
        if report.ok:
            echo("clean")
    if not report.ok:
        exit_reported(VerificationFailed)


@app.command("rm")
def rm_cmd(
    name: Annotated[str, typer.Argument(help="NAME (every revision) or NAME@REVISION (one).")],
    force: Annotated[bool, typer.Option("--force", help="Remove it even while deployed or the base of another model.")] = False,
    json_out: JsonOpt = False,
) -> None:
    """Remove a model from the catalog; its blobs go at the next `registry gc`. Recorded in the event log."""
    from registry.services.remove import remove_model

    result = remove_model(open_registry(), name, force=force)
    if json_out:
        emit_json(result)
        return
    for r in result.removed:
        extra = "".join([f"; its deployments {', '.join(r.deployments)} are no longer recorded" if r.deployments else "",
                         f"; {', '.join(r.dependents)} keep their own components" if r.dependents else ""])
        echo(f"removed {r.name}@{r.commit[:12]} ({r.state}){extra}")
    echo(f"{plural(result.files_released, 'catalog file')} released: run `registry gc` to free their blobs")
