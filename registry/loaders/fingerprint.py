"""Smoke outputs -> a fingerprint (sha256 of the rounded values, names and shapes) plus summary
statistics, and the comparisons: two runs identical, everything finite, a re-run within tolerance."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from registry.loaders.runtime import require

# numpy comes with the `ml` extra, not the core: a mirror host gets MissingExtra, not ImportError
np = require("numpy", "ml")

# decimals kept in the fingerprint, and (rtol, atol) for comparing statistics, by dtype
DECIMALS = {"float32": 4, "bfloat16": 2, "float16": 2}
TOLERANCE = {"float32": (1e-3, 1e-4), "bfloat16": (5e-2, 2e-2), "float16": (2e-2, 1e-2)}
GPU_FLOAT32 = (5e-3, 1e-3)  # TF32 and other kernels: looser than CPU float32
SAMPLE = 16


@dataclass(frozen=True)
class Fingerprint:
    digest: str
    shapes: dict[str, list[int]]
    stats: dict[str, dict[str, Any]]


def _stats(a: np.ndarray) -> dict[str, Any]:
    flat = a.astype(np.float64).ravel()
    if flat.size == 0:
        return {"mean": 0.0, "std": 0.0, "min": 0.0, "max": 0.0, "l2": 0.0, "sample": []}
    idx = np.linspace(0, flat.size - 1, num=min(SAMPLE, flat.size)).astype(int)
    return {"mean": float(flat.mean()), "std": float(flat.std()), "min": float(flat.min()), "max": float(flat.max()),
            "l2": float(np.sqrt((flat ** 2).sum())), "sample": [float(x) for x in flat[idx]]}


def fingerprint(outputs: Mapping[str, np.ndarray], dtype: str) -> Fingerprint:
    decimals = DECIMALS.get(dtype, 4)
    h = hashlib.sha256()
    shapes: dict[str, list[int]] = {}
    stats: dict[str, dict[str, Any]] = {}
    for name in sorted(outputs):
        a = np.asarray(outputs[name])
        shapes[name] = [int(d) for d in a.shape]
        stats[name] = _stats(a)
        rounded = np.round(a.astype(np.float64), decimals) + 0.0  # + 0.0 turns -0.0 into 0.0
        h.update(json.dumps([name, shapes[name]]).encode())
        h.update(np.ascontiguousarray(rounded).astype("<f8").tobytes())
    h.update(json.dumps(stats, sort_keys=True, default=lambda x: round(x, decimals)).encode())
    return Fingerprint(h.hexdigest(), shapes, stats)


def nonfinite(outputs: Mapping[str, np.ndarray]) -> list[str]:
    return [f"{n} ({int((~np.isfinite(a)).sum())} values)" for n, a in sorted(outputs.items())
            if not np.isfinite(np.asarray(a, dtype=np.float64)).all()]


def differing(first: Mapping[str, np.ndarray], second: Mapping[str, np.ndarray]) -> list[str]:
    """Outputs that are not bit-identical between two runs, with the largest difference."""
    out = []
    for name in sorted(set(first) | set(second)):
        a, b = first.get(name), second.get(name)
        if a is None or b is None or np.shape(a) != np.shape(b):
            out.append(f"{name} (shape {np.shape(a)} vs {np.shape(b)})")
        elif not np.array_equal(a, b):
            out.append(f"{name} (max difference {float(np.max(np.abs(np.asarray(a) - np.asarray(b)))):.3g})")
    return out


def max_difference(first: Mapping[str, np.ndarray], second: Mapping[str, np.ndarray]) -> float:
    diffs = [float(np.max(np.abs(np.asarray(first[n], dtype=np.float64) - np.asarray(second[n], dtype=np.float64))))
             for n in first if n in second and np.shape(first[n]) == np.shape(second[n]) and np.size(first[n])]
    return max(diffs, default=0.0)


def tolerance(device: str, dtype: str) -> tuple[float, float]:
    if dtype == "float32" and not device.startswith("cpu"):
        return GPU_FLOAT32
    return TOLERANCE.get(dtype, TOLERANCE["float32"])


def compare_stats(recorded: Mapping[str, Any], now: Mapping[str, Any], rtol: float, atol: float) -> list[str]:
    """Where two fingerprints' statistics disagree beyond tolerance (empty: they agree)."""
    problems = []
    for name in sorted(set(recorded) | set(now)):
        r, n = recorded.get(name), now.get(name)
        if r is None or n is None:
            problems.append(f"{name}: {'missing now' if n is None else 'not recorded'}")
            continue
        for key in ("mean", "std", "min", "max", "l2"):
            if abs(r[key] - n[key]) > atol + rtol * abs(r[key]):
                problems.append(f"{name}.{key}: recorded {r[key]:.6g}, now {n[key]:.6g}")
        rs, ns = r.get("sample", []), n.get("sample", [])
        if len(rs) != len(ns) or any(abs(x - y) > atol + rtol * abs(x) for x, y in zip(rs, ns)):
            problems.append(f"{name}.sample: values differ beyond tolerance")
    return problems
