"""Running a family's smoke: fixed inputs, twice; identical, finite outputs of the expected shapes;
for adapters, outputs that differ from the base's. Returns the outputs' fingerprint and timings."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from registry.errors import SmokeFailed
from registry.loaders.base import Family, Loaded, Outputs
from registry.loaders.fingerprint import Fingerprint, differing, fingerprint, max_difference, nonfinite


@dataclass(frozen=True)
class SmokeInputs:
    texts: tuple[str, ...]
    image: tuple[int, int, int] | None  # width, height, seed of the synthetic image

    @classmethod
    def from_manifest(cls, smoke: Mapping[str, Any]) -> "SmokeInputs":
        img = smoke.get("image")
        image = None if not img else (int(img.get("width", 56)), int(img.get("height", 56)), int(img.get("seed", 0)))
        return cls(tuple(smoke.get("texts") or ("What is the capital of France?",)), image)

    def picture(self) -> Any:
        """A deterministic RGB noise image with a gradient (so it is not constant)."""
        if self.image is None:
            return None
        import numpy as np
        from PIL import Image

        width, height, seed = self.image
        rng = np.random.default_rng(seed)
        noise = rng.integers(0, 128, size=(height, width, 3), dtype=np.uint8)
        ramp = (np.arange(width, dtype=np.uint16) * 127 // max(width - 1, 1)).astype(np.uint8)
        return Image.fromarray(noise + ramp[None, :, None])  # uint8 HxWx3: RGB


@dataclass(frozen=True)
class SmokeOutcome:
    outputs: Outputs
    fingerprint: Fingerprint
    wall_ms: float          # one smoke run (the second, warm)
    first_ms: float         # the first run, cold (kernels, caches)
    inputs: str             # what was fed, in words
    adapter_effect: float | None  # max |adapted - base| on the smoke input, for adapters


EMBEDDING_SUFFIXES = ("embeddings", "_vecs")


def _check_expect(outputs: Outputs, expect: Mapping[str, Any]) -> None:
    """The manifest's ``expect``: ``dim`` (last axis of every embedding output), ``normalized`` (unit-length
    rows, zero rows of padding aside), and ``{output: [shape]}`` with -1 for any size."""
    import numpy as np

    embeddings = {n: a for n, a in outputs.items() if n.endswith(EMBEDDING_SUFFIXES)}
    dim = expect.get("dim")
    if isinstance(dim, int):
        wrong = {n: a.shape[-1] for n, a in embeddings.items() if a.shape[-1] != dim}
        if wrong:
            raise SmokeFailed(f"embedding dimension {wrong}, the manifest expects {dim}",
                              details={"check": "shapes", "expected": dim})
    if expect.get("normalized") is True:
        for n, a in embeddings.items():
            norms = np.linalg.norm(np.asarray(a, dtype=np.float64).reshape(-1, a.shape[-1]), axis=-1)
            off = norms[(norms > 1e-6) & (np.abs(norms - 1.0) > 2e-2)]
            if off.size:
                raise SmokeFailed(f"{n}: {off.size} vectors are not unit length (e.g. norm {off[0]:.4f}); the "
                                  "manifest expects normalised embeddings", details={"check": "normalized"})
    _check_shapes(outputs, expect)


def _check_shapes(outputs: Outputs, expect: Mapping[str, Any]) -> None:
    for name, want in expect.items():
        if not isinstance(want, list):
            continue
        got = list(outputs[name].shape) if name in outputs else None
        if got is None or len(got) != len(want) or any(w not in (-1, None) and w != g for w, g in zip(want, got)):
            raise SmokeFailed(f"smoke output {name} has shape {got}, the manifest expects {want}",
                              details={"check": "shapes", "output": name, "shape": got, "expected": want})


def run_smoke(family: Family, loaded: Loaded, inputs: SmokeInputs,
              expect: Mapping[str, Any] | None = None) -> SmokeOutcome:
    image = inputs.picture()
    start = time.perf_counter()
    first = family.smoke(loaded, inputs.texts, image)
    mid = time.perf_counter()
    second = family.smoke(loaded, inputs.texts, image)
    end = time.perf_counter()
    bad = nonfinite(first)
    if bad:
        raise SmokeFailed("smoke outputs hold NaN or infinite values: " + ", ".join(bad),
                          details={"check": "finite", "outputs": bad})
    changed = differing(first, second)
    if changed:
        raise SmokeFailed("two smoke runs on the same input gave different outputs: " + "; ".join(changed)
                          + " (a module in training mode, dropout, or a nondeterministic kernel)",
                          details={"check": "deterministic", "outputs": changed})
    if not first:
        raise SmokeFailed("the smoke produced no outputs", details={"check": "shapes"})
    _check_expect(first, expect or {})
    effect = None
    if loaded.without_adapter is not None:
        with loaded.without_adapter():
            base = family.smoke(loaded, inputs.texts, image)
        effect = max_difference(first, base)
        if effect == 0.0:
            raise SmokeFailed("the adapter has no effect: the adapted model's smoke output equals the base's "
                              "(an untrained adapter, or one applied to no module)",
                              details={"check": "adapter_effect"})
    used_image = image is not None and any(k.startswith("image") for k in first)
    words = f"{len(inputs.texts)} text(s)" + (f" + {inputs.image[0]}x{inputs.image[1]} image" if used_image else "")
    return SmokeOutcome(first, fingerprint(first, loaded.placement.dtype), (end - mid) * 1000, (mid - start) * 1000,
                        words, effect)
