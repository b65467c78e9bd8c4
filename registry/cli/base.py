"""Shared pieces of the CLI: the typer app, option types, opening the registry, rendering."""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import json
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
import typer.core

from registry.config import Settings
from registry.errors import RegistryError
from registry.units import human_size  # noqa: F401  (re-exported: the commands import it from here)


def _flag_display_type(self: typer.core.TyperOption, ctx: Any) -> str | None:
    """typer 0.29 labels every flag ``<bool>`` in --help; a flag takes no value, so show none."""
    if self.is_flag:
        return None
    return _option_display_type(self, ctx)


# only where typer has that hook (0.29+); older releases draw no type for flags and have nothing to mend
_option_display_type = getattr(typer.core.TyperOption, "display_type_rich", None)
if _option_display_type is not None:
    typer.core.TyperOption.display_type_rich = _flag_display_type  # type: ignore[method-assign]

app = typer.Typer(
    name="registry",
    help="A model artifact registry: complete, verified models, pulled, loaded, served and audited.",
    add_completion=False,
    pretty_exceptions_enable=False,
)
db_app = typer.Typer(help="Catalog schema migrations.", no_args_is_help=True)
app.add_typer(db_app, name="db")

JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object with stable keys on stdout.")]
WideOpt = Annotated[bool, typer.Option("--wide", help="Whole digests and commits, and no column shortened to fit 100 columns.")]


def exit_reported(error: type[RegistryError]) -> NoReturn:
    """End a command whose report (table or JSON) is already printed, with the exit code of ``error``:
    main() then prints nothing more, so ``--json`` output stays one document."""
    raise typer.Exit(error.exit_code)


# the registries this command opened: main() prints their notes when the command ends
OPENED: list[Any] = []


def open_registry(**overrides: Any):  # -> Registry (imported lazily: keeps `--help` fast)
    """The registry from the environment; ``overrides`` (e.g. ``trust_file`` from --trust) win when not None."""
    from registry.services.context import Registry

    registry = Registry.open(Settings.from_env(**overrides))
    OPENED.append(registry)
    return registry


def print_registry_notes() -> None:
    """The notes of every registry this command opened (a damaged stat cache rebuilt, a new catalog over a full
    store, dead operations' leftovers cleaned), on stderr."""
    seen: set[str] = set()
    for registry in OPENED:
        for text in registry.notes():
            if text not in seen:
                seen.add(text)
                note(f"registry: note: {text}")
    OPENED.clear()


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


def emit_json_rows(head: dict[str, Any], lists: dict[str, Any]) -> None:
    """One JSON object like ``emit_json``, whose ``lists`` (name -> rows, already plain dicts) print one row per
    line: the C encoder writes each row (an indented document goes through json's pure-Python encoder, ~10x
    slower, which a fleet of 50 000 deployments notices)."""
    body = json.dumps(jsonable({**head, **{key: [] for key in lists}}), indent=2)
    for key, rows in reversed(lists.items()):  # from the last: what is inserted is never searched again
        marker = f'"{key}": []'
        items = ",\n    ".join(json.dumps(r, separators=(", ", ": ")) for r in rows)
        if items:
            body = body.replace(marker, f'"{key}": [\n    {items}\n  ]', 1)
    sys.stdout.write(body + "\n")


def plural(n: int, word: str, words: str | None = None) -> str:
    """ "1 model", "2 models": counts read as English."""
    return f"{n:,} {word if n == 1 else (words or word + 's')}"


_NUMERIC = re.compile(r"^-?[\d,]+(\.\d+)?( [kMGT]?B| ms| s)?$")
TABLE_WIDTH = 100


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]], *, wide: bool = False) -> str:
    """A plain-text table: numbers and sizes right-aligned, and (unless ``wide``) at most TABLE_WIDTH columns,
    the widest text column shortened with an ellipsis."""
    cells = [[("" if c is None else str(c)) for c in r] for r in rows]
    columns = range(len(headers))
    numeric = [bool(cells) and all(_NUMERIC.match(r[i]) for r in cells if r[i]) for i in columns]
    widths = [max([len(str(headers[i]))] + [len(r[i]) for r in cells]) for i in columns]
    while not wide and sum(widths) + 2 * (len(widths) - 1) > TABLE_WIDTH:
        i = max((i for i in columns if not numeric[i]), key=lambda i: widths[i], default=None)
        if i is None or widths[i] <= max(12, len(str(headers[i]))):
            break
        widths[i] -= 1

    def fit(text: str, i: int) -> str:
        text = text if len(text) <= widths[i] else text[: widths[i] - 1] + "…"
        return text.rjust(widths[i]) if numeric[i] else text.ljust(widths[i])

    lines = ["  ".join(fit(str(h), i) for i, h in enumerate(headers)).rstrip(),
             "  ".join("-" * w for w in widths)]
    lines += ["  ".join(fit(c, i) for i, c in enumerate(r)).rstrip() for r in cells]
    return "\n".join(lines)


def echo(text: str = "") -> None:
    typer.echo(text)


def note(text: str) -> None:
    """Progress and notes go to stderr so stdout stays parseable; --quiet drops them (errors still print)."""
    from registry.cli.progress import is_quiet

    if not is_quiet():
        typer.echo(text, err=True)


NoSmokeOpt = Annotated[bool, typer.Option(
    "--no-smoke", help="Stop at `verified`: skip the smoke registration (also REGISTRY_SMOKE=0).")]
DeviceOpt = Annotated[str, typer.Option("--device", help="Smoke device: auto (CUDA when present), cpu or cuda.")]


def register_flag(no_smoke: bool) -> bool | None:
    """--no-smoke stops at `verified`; otherwise REGISTRY_SMOKE decides (on unless it is 0)."""
    return False if no_smoke else None


# Files an ingest leaves out that a user may have expected to be part of the model.
_NOTABLE = (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".onnx", ".gguf", ".h5", ".msgpack", ".py")


def finish_ingest(result: Any, *, json_out: bool, detail: str, extra: dict[str, Any] | None = None) -> None:
    """The end of `add` and `pull` (registration ran in the service): notes, then the result as JSON or as a
    summary and a table."""
    for disagreement in getattr(result, "disagreements", ()):
        note(f"note: {disagreement}")
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
        emit_json({**jsonable(result), **jsonable(extra or {})})
        return
    echo(f"{result.name}@{result.commit[:12]} ({result.revision}): {result.state}, family {result.family}"
         f"{' (inferred manifest)' if result.inferred else ''}")
    if getattr(result, "family_rule", ""):
        echo(result.family_rule)
    echo(f"root digest {result.root_digest}; {detail}")
    echo(table(["role", "repo", "commit", "files", "size", "pinned"],
               [(c.role, c.repo, c.commit[:12], c.files, human_size(c.bytes), "yes" if c.pinned else "no")
                for c in result.components]))
    if result.pickles:
        echo(f"pickle files (loaded only with torch.load(weights_only=True)): {', '.join(result.pickles)}")
