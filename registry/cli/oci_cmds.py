"""push, and the oci:// form of pull."""

from __future__ import annotations

import os
from typing import Annotated, Any

import typer

from registry.cli.base import JsonOpt, app, echo, emit_json, finish_ingest, human_size, note, open_registry, register_flag

InsecureOpt = Annotated[bool, typer.Option(
    "--insecure", help="Plain HTTP instead of HTTPS; only for a registry on loopback (127.0.0.1, ::1, localhost).")]


def _credentials(reference: str) -> Any:
    from registry.oci.auth import load_credentials
    from registry.oci.reference import parse_reference

    return load_credentials(parse_reference(reference).host, os.environ)


def _progress() -> Any:
    from registry.cli.progress import progress_bars

    return progress_bars()


@app.command("push")
def push_cmd(
    name: Annotated[str, typer.Argument(help="The model: NAME or NAME@REVISION.")],
    target: Annotated[str, typer.Argument(help="oci://HOST[:PORT]/REPO[:TAG] (default tag: latest).")],
    insecure: InsecureOpt = False,
    workers: Annotated[int, typer.Option("--workers", min=1, help="Blobs sent at once.")] = 4,
    json_out: JsonOpt = False,
) -> None:
    """Push a verified model (and the models it stands on) to an OCI registry as CNCF ModelPack artifacts."""
    from registry.services.oci_push import push_model

    result = push_model(open_registry(), name, target, credentials=_credentials(target), insecure=insecure,
                        workers=workers, progress=_progress())
    if json_out:
        emit_json(result)
        return
    echo(f"{result.name}@{result.commit[:12]} -> {result.reference} (tag {result.tag})"
         + (": unchanged, nothing sent" if result.unchanged else ""))
    echo(f"{result.blobs} blobs: {result.uploaded_blobs} uploaded ({human_size(result.uploaded_bytes)}), "
         f"{result.mounted_blobs} mounted from another repository, {result.present_blobs} already there")
    for a in result.artifacts:
        echo(f"  {a.repo}@{a.commit[:12]}  {a.tag}  {a.digest}  {a.files} files, {human_size(a.bytes)}"
             + ("  (unchanged)" if a.unchanged else ""))


def refuse_hub_options(**given: Any) -> None:
    """Options of a Hub pull say nothing to an OCI pull: the artifact carries its revision and manifest."""
    from registry.errors import UsageError

    named = [f"--{k}" for k, v in given.items() if v is not None]
    if named:
        raise UsageError(f"{', '.join(named)} cannot be used with an oci:// reference: the artifact pins its commit "
                         "and carries its manifest (pick the artifact with :TAG or @sha256:...)")


def pull_oci_cmd(reference: str, *, insecure: bool, retries: int, backoff: float, no_smoke: bool, device: str,
                 json_out: bool) -> None:
    """``registry pull oci://...``: the pull command hands such references over to here."""
    from registry.services.oci_pull import pull_oci

    reg = open_registry()
    result = pull_oci(reg, reference, credentials=_credentials(reference), insecure=insecure, progress=_progress(),
                      retries=retries, backoff=backoff, register=register_flag(no_smoke), device=device)
    if len(result.models) > 1:
        note(f"recorded {len(result.models)} models: {', '.join(result.models)}")
    finish_ingest(result, json_out=json_out,
                  detail=(f"{result.reference}; {result.files} files, {human_size(result.bytes)}; downloaded "
                          f"{result.downloaded_files} ({human_size(result.downloaded_bytes)}), {result.reused_files} "
                          "already in the store"
                          + (f", {result.resumed_files} resumed" if result.resumed_files else "")))
