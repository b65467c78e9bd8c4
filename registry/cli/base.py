"""Shared pieces of the CLI: the typer app, option types, opening the registry, rendering."""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any

import typer

from registry.config import Settings

app = typer.Typer(
    name="registry",
    help="A model artifact registry: complete, verified models, pulled, loaded, served and audited.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
db_app = typer.Typer(help="Catalog schema migrations.", no_args_is_help=True)
app.add_typer(db_app, name="db")

JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object with stable keys on stdout.")]


def open_registry(**overrides: Any):  # -> Registry (imported lazily: keeps `--help` fast)
    from registry.services.context import Registry

    return Registry.open(Settings.from_env(**overrides))


def jsonable(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [jsonable(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, (dt.datetime, dt.date)):
        return value.isoformat()
    if isinstance(value, enum.Enum):
        return value.value
    return value


def emit_json(value: Any) -> None:
    sys.stdout.write(json.dumps(jsonable(value), indent=2, sort_keys=False) + "\n")


def human_size(n: int) -> str:
    size = float(n)
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if size < 1000 or unit == "TB":
            return f"{int(size)} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{n} B"


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    cells = [[str(h) for h in headers]] + [[("" if c is None else str(c)) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def echo(text: str = "") -> None:
    typer.echo(text)


def note(text: str) -> None:
    """Progress and notes go to stderr so stdout stays parseable."""
    typer.echo(text, err=True)


NoSmokeOpt = Annotated[bool, typer.Option(
    "--no-smoke", help="Stop at `verified`: skip the smoke registration (also REGISTRY_SMOKE=0).")]
DeviceOpt = Annotated[str, typer.Option("--device", help="Smoke device: auto (CUDA when present), cpu or cuda.")]


def register_after(reg: Any, name: str, commit: str, *, no_smoke: bool, device: str) -> dict[str, Any]:
    """The registration that ends `add` and `pull`; returns its JSON form and prints its line to stderr."""
    if no_smoke or not reg.settings.smoke_after_ingest:
        why = "--no-smoke" if no_smoke else "REGISTRY_SMOKE=0"
        message = (f"{name}@{commit[:12]} left verified ({why}): no smoke inference ran; "
                   f"run `registry register {name}` to register it")
        note(message)
        return {"state": None, "smoke": None, "message": message}
    from registry.services.register import register_after_ingest

    result = register_after_ingest(reg, f"{name}@{commit}", smoke=True, device=device)
    note(result.message)
    return jsonable(result)


def finish_ingest(reg: Any, result: Any, *, no_smoke: bool, device: str, json_out: bool, detail: str) -> None:
    """The end of `add` and `pull`: registration, then the result as JSON or as a summary and a table."""
    for disagreement in getattr(result, "disagreements", ()):
        note(f"note: {disagreement}")
    registration = register_after(reg, result.name, result.commit, no_smoke=no_smoke, device=device)
    state = registration["state"] or result.state
    if json_out:
        emit_json({**jsonable(result), "state": state, "registration": registration})
        return
    echo(f"{result.name}@{result.commit[:12]} ({result.revision}): {state}, family {result.family}"
         f"{' (inferred manifest)' if result.inferred else ''}")
    if getattr(result, "family_rule", ""):
        echo(result.family_rule)
    echo(f"root digest {result.root_digest}; {detail}")
    echo(table(["role", "repo", "commit", "files", "size", "pinned"],
               [(c.role, c.repo, c.commit[:12], c.files, human_size(c.bytes), "yes" if c.pinned else "no")
                for c in result.components]))
    if result.pickles:
        echo(f"pickle files (loaded only with torch.load(weights_only=True)): {', '.join(result.pickles)}")
