"""load / register / merge."""

from __future__ import annotations

from typing import Annotated

import typer

from registry.cli.base import JsonOpt, app, echo, emit_json, exit_reported, note, open_registry
from registry.errors import VerificationFailed

DeviceOpt = Annotated[str, typer.Option("--device", help="auto (CUDA when available), cpu or cuda.")]
DtypeOpt = Annotated[str, typer.Option("--dtype", help="auto (float32 on CPU, the checkpoint's on CUDA), float32, "
                                                       "bfloat16 or float16.")]


def _smoke_lines(s) -> None:  # s: SmokeSummary
    echo(f"smoke: {s.inputs} on {s.device} {s.dtype}, twice, identical; load {s.load_ms:.0f} ms, "
         f"first run {s.first_ms:.0f} ms, second {s.wall_ms:.0f} ms")
    echo(f"outputs: {', '.join(f'{k} {tuple(v)}' for k, v in s.output_shapes.items())}")
    echo(f"fingerprint: {s.fingerprint}")
    if s.adapter_effect is not None:
        echo(f"adapter effect: max |adapted - base| = {s.adapter_effect:.4g}")
    for c in s.checks:
        echo(f"  ok: {c}")
    for n in s.notes:
        note(f"note: {n}")


@app.command("load")
def load_cmd(
    name: Annotated[str, typer.Argument(help="NAME or NAME@REVISION")],
    device: DeviceOpt = "auto",
    dtype: DtypeOpt = "auto",
    check: Annotated[bool, typer.Option("--check", help="Re-run the smoke and compare with the recorded fingerprint.")] = False,
    json_out: JsonOpt = False,
) -> None:
    """Load a model through the gate (complete, verified, not quarantined) with its family's library."""
    reg = open_registry()
    if check:
        from registry.services.register import check_model, require_match

        result = check_model(reg, name, device=device, dtype=dtype)
        if json_out:
            emit_json(result)
        else:
            echo(f"{result.name}@{result.commit[:12]}: {result.match} to the run recorded on "
                 f"{result.recorded_device} {result.recorded_dtype} (rtol {result.tolerance[0]:g}, atol {result.tolerance[1]:g})")
            _smoke_lines(result.smoke)
            for p in result.problems:
                echo(f"  differs: {p}")
        if not result.ok:
            if json_out:
                exit_reported(VerificationFailed)  # the result above is the one JSON document
            require_match(result)
        return
    from registry.services.load import load_model

    s = load_model(reg, name, device=device, dtype=dtype).summary
    if json_out:
        emit_json(s)
        return
    echo(f"{s.name}@{s.commit[:12]} ({s.state}): loaded with the {s.family} family on {s.device} {s.dtype} "
         f"in {s.load_ms:.0f} ms, {s.parameters:,} parameters")
    for c in s.checks:
        echo(f"  ok: {c}")
    for n in s.notes:
        note(f"note: {n}")
    if s.state != "registered":
        note(f"note: {s.name} is {s.state}, not registered: no smoke test has proven it; run `registry register {s.name}`")


@app.command("register")
def register_cmd(
    name: Annotated[str, typer.Argument(help="NAME or NAME@REVISION")],
    no_smoke: Annotated[bool, typer.Option("--no-smoke", help="Skip the smoke inference; the model stays verified.")] = False,
    device: DeviceOpt = "auto",
    dtype: DtypeOpt = "auto",
    json_out: JsonOpt = False,
) -> None:
    """Smoke-test a verified model (twice, on the GPU when there is one) and mark it registered; a failure
    quarantines it (exit 11)."""
    from registry.services.register import register_model

    result = register_model(open_registry(), name, smoke=not no_smoke, device=device, dtype=dtype)
    if json_out:
        emit_json(result)
        return
    echo(result.message)
    if result.smoke is not None:
        _smoke_lines(result.smoke)


@app.command("merge")
def merge_cmd(
    name: Annotated[str, typer.Argument(help="The adapter model, NAME or NAME@REVISION.")],
    new_name: Annotated[str, typer.Option("--name", help="The merged model's name, e.g. org/name-merged.")],
    device: DeviceOpt = "auto",
    json_out: JsonOpt = False,
) -> None:
    """Merge a LoRA adapter into its pinned base, save it whole (safetensors + processor files), record it with
    lineage to both, prove its output equals adapter+base, and register it."""
    from registry.services.merge import merge_model

    result = merge_model(open_registry(), name, new_name, device=device)
    if json_out:
        emit_json(result)
        return
    echo(f"{result.name}@{result.commit[:12]}: merged from {result.adapter} over {result.base}; {result.files} files, "
         f"state {result.state}")
    echo(f"merged vs adapter+base: max |difference| {result.max_difference:.3g} (tolerance {result.tolerance:g})")
    if result.register.smoke is not None:
        _smoke_lines(result.register.smoke)
