"""Importing the optional ML stack, picking a device and dtype, and reporting library versions.

Nothing here imports torch at module import time: a mirror host installs none of it.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import sys
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from registry.errors import BrokenExtra, MissingExtra, UsageError

DEVICES = ("auto", "cpu", "cuda")
DTYPES = ("auto", "float32", "bfloat16", "float16")
LIBRARIES = ("torch", "transformers", "peft", "sentence-transformers", "colpali-engine", "FlagEmbedding",
             "safetensors", "tokenizers", "accelerate", "torchvision")


# The library each family's loader imports, and the extra that installs it.
FAMILY_LIBRARIES = {
    "transformers": ("transformers", "ml"), "peft": ("peft", "ml"),
    "sentence-transformers": ("sentence_transformers", "ml"), "colqwen2": ("colpali_engine", "colpali"),
    "colpali": ("colpali_engine", "colpali"), "bge-m3": ("FlagEmbedding", "bge"), "visualized-bge": ("visual_bge", "bge"),
    "remote-code": ("transformers", "ml"),
}
_hidden: dict[str, str] = {}  # module -> why import_torch hid it


def _top(module: str) -> str:
    return module.split(".")[0]


def version_of(module: str) -> str | None:
    """The installed version of the distribution that provides ``module`` (None: not installed by pip)."""
    for dist in importlib.metadata.packages_distributions().get(_top(module), [_top(module)]):
        try:
            return importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            continue
    return None


def _named(module: str) -> str:
    version = version_of(module)
    return f"{_top(module)} {version}" if version else _top(module)


def environment_fault(library: str, exc: BaseException, extra: str) -> BrokenExtra:
    """``library`` is installed but importing it (or something it imports) failed: say what, and what to do."""
    failed = getattr(exc, "name", None) if isinstance(exc, ImportError) else None
    first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
    lib = _named(library)
    if failed and _top(failed) in _hidden:
        problem = f"{_named(failed)} cannot load here ({_hidden[_top(failed)]})"
        install = (f"install the {_top(failed)} build that matches torch {version_of('torch') or ''}".rstrip()
                   + " (from the same index as torch)")
    elif failed and _top(failed) != _top(library) and importlib.util.find_spec(_top(failed)) is None:
        problem = f"it needs {_top(failed)}, which is not installed ({first})"
        install = f"pip install {_top(failed)}"
    elif failed and _top(failed) != _top(library):
        problem = f"{first}: {lib} does not work with the installed {_named(failed)}"
        install = (f"install versions that work together, e.g. the ones the registry is tested with "
                   f"(pip install -c .ci/constraints.txt -e '.[{extra}]' in a checkout of the registry)")
    else:
        problem = f"{type(exc).__name__}: {first}"
        install = f"reinstall it: pip install --force-reinstall {_top(library)}"
    return BrokenExtra(
        f"{lib} cannot be imported here: {problem}; {install}. This is the environment, not the model: nothing "
        "was quarantined",
        details={"library": _top(library), "version": version_of(library), "module": failed or _top(library),
                 "extra": extra, "install": install, "error": f"{type(exc).__name__}: {first}"},
    )


def require(module: str, extra: str = "ml", *, without_package_inits: bool = False) -> ModuleType:
    """Import an optional module: MissingExtra (exit 12) naming the extra when its library is not installed,
    BrokenExtra (exit 12) when it is installed but fails to import.

    ``without_package_inits``: import only ``module`` and what it imports itself, not the ``__init__`` of
    the packages above it (FlagEmbedding's root imports every reranker and trainer it ships)."""
    if importlib.util.find_spec(_top(module)) is None:
        raise MissingExtra.for_module(module, extra)
    try:
        if without_package_inits:
            from registry.loaders.partial_import import import_without_package_inits

            return import_without_package_inits(module)
        return importlib.import_module(module)
    except Exception as exc:  # noqa: BLE001 - any failure inside an installed library's import is the environment's
        raise environment_fault(module, exc, extra) from exc


def import_torch() -> ModuleType:
    """torch, with a torchvision that cannot load hidden from transformers.

    A CUDA torchvision from PyPI beside a CPU torch fails at import (``operator torchvision::nms does
    not exist``); transformers imports it as soon as it sees it installed, which breaks even text
    models. We try it once: if it fails, it is marked absent, so transformers takes its torchvision-free
    paths (image processors then are unavailable, and the smoke says so); a library that needs it anyway
    gets a BrokenExtra naming the reason.
    """
    torch = require("torch")
    if "torchvision" not in sys.modules:
        try:
            importlib.import_module("torchvision")
        except ImportError:
            pass
        except Exception as exc:  # noqa: BLE001 - any failure inside torchvision's own import
            for name in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
                del sys.modules[name]
            sys.modules["torchvision"] = None  # type: ignore[assignment]  # find_spec -> None, import -> ImportError
            _hidden["torchvision"] = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
    return torch


def vision_available() -> bool:
    import_torch()
    return sys.modules.get("torchvision") is not None


@dataclass(frozen=True)
class Placement:
    device: str       # "cpu" or "cuda:0"
    dtype: str        # "float32", "bfloat16", "float16"
    device_name: str  # "cpu" or the GPU's name

    @property
    def label(self) -> str:
        return self.device if self.device == "cpu" else f"{self.device} {self.device_name}"[:64]

    def torch_dtype(self) -> Any:
        return getattr(import_torch(), self.dtype)


def place(device: str = "auto", dtype: str = "auto", *, checkpoint_dtype: str | None = None) -> Placement:
    """CUDA when asked or when available ('auto'); dtype 'auto' is float32 on CPU, the checkpoint's on CUDA."""
    if device not in DEVICES:
        raise UsageError(f"--device {device!r}: choose one of {', '.join(DEVICES)}")
    if dtype not in DTYPES:
        raise UsageError(f"--dtype {dtype!r}: choose one of {', '.join(DTYPES)}")
    torch = import_torch()
    cuda = torch.cuda.is_available()
    if device == "cuda" and not cuda:
        raise UsageError("--device cuda: no CUDA device is visible here (torch.cuda.is_available() is False); "
                         "use --device cpu, or auto to take the GPU only where there is one")
    use_cuda = device == "cuda" or (device == "auto" and cuda)
    if dtype == "auto":
        dtype = checkpoint_dtype if use_cuda and checkpoint_dtype in ("bfloat16", "float16") else "float32"
    if not use_cuda and dtype == "float16":
        raise UsageError("--dtype float16 needs a GPU; on CPU use float32 or bfloat16")
    if use_cuda:
        return Placement("cuda:0", dtype, torch.cuda.get_device_name(0))
    return Placement("cpu", dtype, "cpu")


def library_versions() -> dict[str, str]:
    out: dict[str, str] = {"python": sys.version.split()[0]}
    for name in LIBRARIES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    torch = sys.modules.get("torch")
    if torch is not None and getattr(torch.version, "cuda", None):
        out["cuda"] = str(torch.version.cuda)
    return out
