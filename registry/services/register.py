"""``registry register``: prove a verified model works, then mark it ``registered``.

The gate (services.load), the family's loader and its checks, then the smoke twice on fixed inputs
(CUDA when there is one): identical, finite outputs of the expected shapes, and for adapters outputs
that differ from the base's. A SmokeRun row records device, dtype, library versions, wall time,
output shapes and the fingerprint. Any failure after the gate quarantines the model with the reason
(SmokeFailed, exit 11). ``load --check`` re-runs the smoke and compares with the recorded fingerprint.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import select

from registry.catalog import states
from registry.catalog.models import Model, SmokeRun
from registry.catalog.queries import find_model
from registry.errors import (
    BrokenExtra, ConflictError, MissingExtra, RegistryError, SmokeFailed, UsageError, VerificationFailed,
)
from registry.services.context import Registry
from registry.services.load import Gated, LoadedModel, gate, instantiate, library_failure


@dataclass(frozen=True)
class SmokeSummary:
    passed: bool
    device: str
    dtype: str
    load_ms: float
    wall_ms: float
    first_ms: float
    inputs: str
    fingerprint: str | None
    output_shapes: dict[str, list[int]]
    adapter_effect: float | None
    checks: tuple[str, ...]
    notes: tuple[str, ...]
    error: str | None = None


@dataclass(frozen=True)
class RegisterResult:
    name: str
    commit: str
    state: str
    reason: str | None
    smoke: SmokeSummary | None
    message: str


def _smoke(gated: Gated, device: str, dtype: str) -> tuple[LoadedModel, Any]:
    from registry.loaders import family
    from registry.loaders.smoke import SmokeInputs, run_smoke

    loaded = instantiate(gated, device, dtype)
    inputs = SmokeInputs.from_manifest(gated.resolved.smoke)
    try:
        outcome = run_smoke(family(gated.resolved.family), loaded.loaded, inputs,
                            gated.resolved.smoke.get("expect") or {})
    except RegistryError:
        raise
    except Exception as exc:  # noqa: BLE001 - a library's own failure becomes a clear refusal
        raise library_failure(gated, "the smoke inference", exc) from exc
    return loaded, outcome


def _summary(loaded: LoadedModel, outcome: Any) -> SmokeSummary:
    s = loaded.summary
    return SmokeSummary(True, s.device, s.dtype, s.load_ms, round(outcome.wall_ms, 1), round(outcome.first_ms, 1),
                        outcome.inputs, outcome.fingerprint.digest, outcome.fingerprint.shapes, outcome.adapter_effect,
                        s.checks, s.notes)


def _record(reg: Registry, gated: Gated, *, passed: bool, device: str, dtype: str, wall_ms: float,
            shapes: dict[str, Any], fingerprint: str | None, stats: dict[str, Any], error: str | None) -> str:
    from registry.loaders.runtime import library_versions

    with reg.catalog.session() as session:
        model = session.get(Model, gated.model_id)
        if model is None:  # removed meanwhile
            raise ConflictError(f"{gated.label} was removed from the catalog during registration")
        session.add(SmokeRun(model=model, passed=passed, device=device[:64], dtype=dtype,
                             library_versions=library_versions(), wall_ms=wall_ms, output_shapes=shapes,
                             fingerprint=fingerprint, stats=stats, error=error))
        if passed:
            lifted = model.state_reason if model.state == states.QUARANTINED else None
            states.register(model)
            reg.log(session, "register", gated.name, commit=gated.commit, device=device, dtype=dtype,
                    fingerprint=fingerprint, **({"lifted": lifted} if lifted else {}))
        else:
            states.quarantine(model, states.Cause.SMOKE, error or "failed")
            reg.log(session, "quarantine", gated.name, commit=gated.commit, reason=model.state_reason)
        return model.state


def register_model(reg: Registry, spec: str, *, smoke: bool = True, device: str = "auto",
                   dtype: str = "auto", as_base: bool = False) -> RegisterResult:
    """Registration runs again whenever asked: on a verified or registered model, and on a quarantined one
    whose cause is the model's own (a pass lifts it). A merge-proof quarantine is lifted by `merge` alone."""
    gated = gate(reg, spec, as_base=as_base, allow_quarantined=True, action="register")
    reason = gated.reason
    if gated.state == states.QUARANTINED and states.cause_of(reason) is states.Cause.MERGE:
        raise ConflictError(f"{gated.label} is quarantined ({reason}); a smoke test cannot lift that: "
                            + states.lifted_by(reason, gated.name),
                            details={"name": gated.name, "state": gated.state, "reason": reason})
    if not smoke:
        message = (f"{gated.label} left {gated.state}: --no-smoke given, no smoke inference ran"
                   + (" (it was registered earlier)" if gated.state == states.REGISTERED else
                      "; it is not registered until `registry register` passes a smoke test"))
        reg.log_now("register.skipped", gated.name, commit=gated.commit)
        return RegisterResult(gated.name, gated.commit, gated.state, None, None, message)
    try:
        loaded, outcome = _smoke(gated, device, dtype)
    except (MissingExtra, UsageError):
        raise  # nothing was tried: the model's state says nothing new
    except SmokeFailed as exc:
        from registry.loaders.runtime import place

        try:
            where = place(device, dtype)
            dev, dt = where.label, where.dtype
        except RegistryError:
            dev, dt = device, dtype
        _record(reg, gated, passed=False, device=dev, dtype=dt, wall_ms=0.0, shapes={}, fingerprint=None,
                stats={"check": exc.details.get("check")}, error=exc.message)
        raise SmokeFailed(f"{gated.label} quarantined: {exc.message}",
                          details={**exc.details, "name": gated.name, "commit": gated.commit,
                                   "state": states.QUARANTINED}) from exc
    summary = _summary(loaded, outcome)
    stats = {"outputs": outcome.fingerprint.stats, "inputs": outcome.inputs, "load_ms": summary.load_ms,
             "first_ms": summary.first_ms, "adapter_effect": outcome.adapter_effect, "notes": list(summary.notes),
             "checks": list(summary.checks)}
    state = _record(reg, gated, passed=True, device=summary.device, dtype=summary.dtype, wall_ms=summary.wall_ms,
                    shapes=outcome.fingerprint.shapes, fingerprint=summary.fingerprint, stats=stats, error=None)
    lifted = f" (its quarantine is lifted: {reason})" if gated.state == states.QUARANTINED else ""
    return RegisterResult(gated.name, gated.commit, state, None, summary,
                          f"{gated.label} registered: smoke passed twice on {summary.device} {summary.dtype}{lifted}")


# ---- load --check ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class CheckResult:
    name: str
    commit: str
    ok: bool
    match: str  # "identical" | "within tolerance" | "different"
    recorded_device: str
    recorded_dtype: str
    recorded_fingerprint: str
    smoke: SmokeSummary
    tolerance: tuple[float, float]
    problems: tuple[str, ...]


def check_model(reg: Registry, spec: str, *, device: str = "auto", dtype: str = "auto",
                as_base: bool = False) -> CheckResult:
    """Re-run the smoke here and compare with the model's recorded fingerprint (tolerance by device and dtype)."""
    from registry.loaders.fingerprint import compare_stats, tolerance

    gated = gate(reg, spec, as_base=as_base)
    loaded, outcome = _smoke(gated, device, dtype)
    summary = _summary(loaded, outcome)
    with reg.catalog.reader() as session:
        runs = session.scalars(select(SmokeRun).where(SmokeRun.model_id == gated.model_id, SmokeRun.passed.is_(True))
                               .order_by(SmokeRun.id.desc())).all()
        same_inputs = [r for r in runs if (r.stats or {}).get("inputs") == outcome.inputs]
        exact = [r for r in same_inputs if r.device == summary.device and r.dtype == summary.dtype]
        run = (exact or same_inputs or [None])[0]
        recorded = None if run is None else (run.device, run.dtype, run.fingerprint,
                                             (run.stats or {}).get("outputs", {}), dict(run.output_shapes))
    if recorded is None:
        why = ("no passed smoke run is recorded" if not runs
               else f"no recorded smoke run used the same inputs ({outcome.inputs})")
        raise ConflictError(f"{gated.label}: {why}; run `registry register {gated.name}` first",
                            details={"name": gated.name})
    rec_device, rec_dtype, rec_fp, rec_stats, rec_shapes = recorded
    a, b = tolerance(rec_device, rec_dtype), tolerance(summary.device, summary.dtype)
    tol = (max(a[0], b[0]), max(a[1], b[1]))
    problems: list[str] = []
    if rec_shapes != outcome.fingerprint.shapes:
        problems.append(f"output shapes {outcome.fingerprint.shapes} differ from the recorded {rec_shapes}")
    if rec_fp == summary.fingerprint and not problems:
        match = "identical"
    else:
        problems.extend(compare_stats(rec_stats, outcome.fingerprint.stats, *tol))
        match = "different" if problems else "within tolerance"
    result = CheckResult(gated.name, gated.commit, not problems, match, rec_device, rec_dtype, rec_fp or "", summary,
                         tol, tuple(problems))
    reg.log_now("load.check", gated.name, commit=gated.commit, match=match, device=summary.device,
                dtype=summary.dtype, problems=problems[:10])
    return result


def require_match(result: CheckResult) -> CheckResult:
    if not result.ok:
        raise VerificationFailed(
            f"{result.name}@{result.commit[:12]}: smoke outputs here ({result.smoke.device} {result.smoke.dtype}) "
            f"differ from the recorded run ({result.recorded_device} {result.recorded_dtype}) beyond tolerance "
            f"rtol={result.tolerance[0]:g} atol={result.tolerance[1]:g}:\n  " + "\n  ".join(result.problems[:10]),
            details={"problems": list(result.problems)})
    return result


def register_after_ingest(reg: Registry, name: str, commit: str, *, register: bool | None = None,
                          device: str = "auto") -> RegisterResult:
    """The registration step that ends ``add`` and ``pull`` (CLI and Python API alike).

    ``register``: True runs the smoke, False stops at ``verified``, None (the default) follows
    ``REGISTRY_SMOKE`` (on unless it is 0). A base (``base_only``) is a dependency: it stays ``verified``.
    Without the ML extras (a mirror host) no smoke can run: the model stays ``verified`` and the message
    says how to register it later, instead of failing an ingest that itself succeeded. A smoke that runs
    and fails raises SmokeFailed (the model is quarantined); a library that is installed but cannot be
    imported raises BrokenExtra (exit 12; the model stays as it was).
    """
    spec = f"{name}@{commit}"
    label = f"{name}@{commit[:12]}"
    with reg.catalog.reader() as session:
        model = find_model(session, spec)
        state, base_only = model.state, bool(model.manifest.get("base_only"))
    if register is False or (register is None and not reg.settings.smoke_after_ingest):
        why = "register=False" if register is False else "REGISTRY_SMOKE=0"
        message = (f"{label} left {state} ({'--no-smoke' if register is False else why}): no smoke inference ran; "
                   f"run `registry register {name}` to register it")
        return RegisterResult(name, commit, state, None, None, message)
    if base_only:
        from registry.services.load import base_users

        users = base_users(reg, name, commit)
        message = (f"{label} left {state}: it is a base (base_only), stored and verified as a dependency"
                   + (f" of {', '.join(users)}" if users else "") + "; it is not registered as a model of its own "
                   f"(`registry register {name} --as-base` does, if you mean to use the bare base)")
        return RegisterResult(name, commit, state, None, None, message)
    try:
        return register_model(reg, spec, smoke=True, device=device)
    except BrokenExtra:
        raise
    except MissingExtra as exc:
        message = (f"{label} left {state}: no smoke inference ran ({exc.message}); "
                   f"then run `registry register {name}`")
        reg.log_now("register.skipped", name, commit=commit, reason="missing extra")
        return RegisterResult(name, commit, state, None, None, message)
