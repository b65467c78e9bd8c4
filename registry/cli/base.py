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


def register_flag(no_smoke: bool) -> bool | None:
    """--no-smoke stops at `verified`; otherwise REGISTRY_SMOKE decides (on unless it is 0)."""
    return False if no_smoke else None


# Files an ingest leaves out that a user may have expected to be part of the model.
_NOTABLE = (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".onnx", ".gguf", ".h5", ".msgpack", ".py")


def finish_ingest(result: Any, *, json_out: bool, detail: str) -> None:
    """The end of `add` and `pull`: the registration's line, then the result as JSON or as a summary."""
    if result.registration is not None:
        note(result.registration.message)
    notable = [p for p in result.ignored if p.endswith(_NOTABLE)]
    if notable:
        more = f" (+{len(notable) - 8} more)" if len(notable) > 8 else ""
        note(f"note: not part of the model (its manifest does not select them, so they were not taken): "
             f"{', '.join(notable[:8])}{more}")
    for key in result.released:
        note(f"note: {key} released from its quarantine: its blobs are proven again")
    if json_out:
        emit_json(result)
        return
    echo(f"{result.name}@{result.commit[:12]} ({result.revision}): {result.state}, family {result.family}"
         f"{' (inferred manifest)' if result.inferred else ''}")
    echo(f"root digest {result.root_digest}; {detail}")
    echo(table(["role", "repo", "commit", "files", "size", "pinned"],
               [(c.role, c.repo, c.commit[:12], c.files, human_size(c.bytes), "yes" if c.pinned else "no")
                for c in result.components]))
    if result.pickles:
        echo(f"pickle files (loaded only with torch.load(weights_only=True)): {', '.join(result.pickles)}")
