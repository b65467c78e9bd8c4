"""registry audit: the fleet's deployments and their states; --verify checks this node's copies; --scan DIR reports
model folders and HF caches the registry did not write."""

from __future__ import annotations

import dataclasses
import datetime as dt
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from registry.cli.base import JsonOpt, WideOpt, app, echo, emit_json_rows, exit_reported, human_size, \
    jsonable, note, open_registry, plural, table


def when(value: dt.datetime | None) -> str:
    return value.astimezone(dt.timezone.utc).strftime("%Y-%m-%d %H:%M") if value else "never"


def _row_json(row: Any) -> dict[str, Any]:
    out = row.to_json()
    out["detail"] = row.drift.summary()
    return out


@app.command("audit")
def audit_cmd(
    node: Annotated[Optional[str], typer.Option("--node", help="Only this node's deployments (with --verify: the node whose copies are on this host's disk; default this host).")] = None,
    model: Annotated[Optional[list[str]], typer.Option("--model", help="Only this model (NAME or NAME@COMMIT); repeat for several.")] = None,
    verify: Annotated[bool, typer.Option("--verify", help="Check this node's deployed copies on disk (stat cache; hashes what changed) and record the result in the catalog.")] = False,
    deep: Annotated[bool, typer.Option("--deep", help="Like --verify, but re-hash every deployed file.")] = False,
    scan: Annotated[Optional[Path], typer.Option("--scan", help="Instead: scan an HF cache or a folder of model folders the registry did not write, and say what each model is.")] = None,
    wide: WideOpt = False,
    json_out: JsonOpt = False,
) -> None:
    """One row per deployment: ok, drifted, stale, missing, quarantined (signatures: unsigned, bad-signature).
    Exit 1 when any row is not ok."""
    from registry.errors import UsageError, VerificationFailed

    if scan is not None:
        if node or model:
            raise UsageError("--scan takes no --node or --model: it reports every model it finds under DIR")
        _scan(scan, verify=verify, deep=deep, wide=wide, json_out=json_out)
        return
    from registry.services.audit import audit

    report = audit(open_registry(), node=node, models=model or [], verify=verify, deep=deep)
    if json_out:
        emit_json_rows({"ok": report.ok, "node": report.node, "models": list(report.models), "counts": report.counts,
                        "verification": jsonable(report.verification)},
                       {"deployments": (_row_json(r) for r in report.rows)})
    else:
        _print_report(report, wide=wide)
    if not report.ok:
        exit_reported(VerificationFailed)


def _print_report(report: Any, *, wide: bool) -> None:
    from registry.catalog.states import QUARANTINED
    n = 12 if not wide else 40
    rows = report.rows
    if rows:
        echo(table(["node", "model", "revision", "state", "signature", "last verified", "path"],
                   [(r.node, r.name, r.commit[:n], r.state, r.signature,
                     when(r.verified_at) + (f" by {r.verified_by}" if r.verified_by else ""), r.path) for r in rows],
                   wide=wide))
    nodes = len({r.node for r in rows})
    counts = ", ".join(f"{c} {s}" for s, c in report.counts.items()) or "none"
    scope = f"on node {report.node}" if report.node else f"on {plural(nodes, 'node')}"
    echo(f"{plural(len(rows), 'deployment')} {scope}: {counts}")
    for r in rows:
        if r.state == "ok":
            continue
        why = r.drift.summary()
        if r.state == "stale":
            why = f"a newer registered revision exists: {r.newest_commit[:n] if r.newest_commit else '?'}"
        elif r.state in (QUARANTINED, "unregistered"):
            why = f"the model is {r.model_state}" + (f": {r.model_state_reason}" if r.model_state_reason else "")
        echo(f"{r.state}  {r.node}  {r.name}@{r.commit[:n]}  {r.path}: {why}")
    v = report.verification
    if v is not None:
        note(f"verified {plural(v.deployments, 'deployment')} of node {v.node} on disk"
             f"{' (deep)' if v.deep else ''}: {plural(v.files_checked, 'file')} checked, "
             f"{plural(v.files_hashed, 'file')} hashed ({human_size(v.bytes_hashed)}); recorded as {v.actor}@{v.host}")
        if v.store_lost:
            echo(f"the store lost {plural(len(v.store_lost), 'blob')} that catalog rows reference (the copies above "
                 "may still be intact); run `registry verify` to quarantine the models, then add or pull them again:")
            for loss in v.store_lost[:50]:
                echo(f"  {loss.name}@{loss.commit[:n]}: {loss.repo}/{loss.path} (blob {loss.sha256[:n]})")
    elif not rows:
        note("no deployments recorded" + (f" on node {report.node}" if report.node else "")
             + "; `registry deploy NAME --target DIR` records one")


def _scan(root: Path, *, verify: bool, deep: bool, wide: bool, json_out: bool) -> None:
    from registry.errors import VerificationFailed
    from registry.services.scan import scan_models

    report = scan_models(open_registry(), root, verify=verify, deep=deep)
    if json_out:
        emit_json_rows({"ok": report.ok, "root": report.root, "layout": report.layout,
                        "files_hashed": report.files_hashed, "bytes_hashed": report.bytes_hashed},
                       {"models": (dataclasses.asdict(m) for m in report.models),
                        "problems": (dataclasses.asdict(p) for p in report.problems)})
    else:
        n = 12 if not wide else 64
        if report.models:
            echo(table(["found", "commit", "verdict", "model", "files", "size", "path"],
                       [(m.repo_id or "-", (m.commit or "")[:n], m.verdict,
                         f"{m.match}" if m.match else "", m.files, human_size(m.bytes), m.path)
                        for m in report.models], wide=wide))
        counts = {}
        for m in report.models:
            counts[m.verdict] = counts.get(m.verdict, 0) + 1
        echo(f"{plural(len(report.models), 'model')} under {report.root} ({report.layout}): "
             + (", ".join(f"{c} {v}" for v, c in sorted(counts.items())) or "none"))
        for m in report.models:
            for line in m.details:
                echo(f"{m.verdict}  {m.repo_id or m.path}: {line}")
        for p in report.problems:
            echo(f"problem  {p.path}: {p.problem}")
        trusting_names = report.layout == "hf-cache" and not (verify or deep)
        note(f"{plural(report.files_hashed, 'file')} hashed ({human_size(report.bytes_hashed)})"
             + ("; blobs judged by their names and sizes, as `hf cache ls` reads them: --verify hashes the bytes, "
                "which also catches blobs whose names do not match their content" if trusting_names else ""))
    if not report.ok:
        exit_reported(VerificationFailed)
