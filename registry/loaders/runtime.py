"""Importing the optional ML stack, picking a device and dtype, and reporting library versions.

Nothing here imports torch at module import time: a mirror host installs none of it.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import sys
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from registry.errors import MissingExtra, UsageError

DEVICES = ("auto", "cpu", "cuda")
DTYPES = ("auto", "float32", "bfloat16", "float16")
LIBRARIES = ("torch", "transformers", "peft", "sentence-transformers", "colpali-engine", "FlagEmbedding",
             "safetensors", "tokenizers", "accelerate", "torchvision")


def require(module: str, extra: str = "ml") -> ModuleType:
    """Import an optional module, or raise MissingExtra (exit 12) naming the extra to install."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        if exc.name and exc.name.split(".")[0] != module.split(".")[0]:
            raise  # the module is there but broken: show the real error
        raise MissingExtra.for_module(module, extra) from exc


def import_torch() -> ModuleType:
    """torch, with a torchvision that cannot load hidden from transformers.

    A CUDA torchvision from PyPI beside a CPU torch fails at import (``operator torchvision::nms does
    not exist``); transformers imports it as soon as it sees it installed, which breaks even text
    models. We try it once: if it fails, it is marked absent, so transformers takes its torchvision-free
    paths (image processors then are unavailable, and the smoke says so).
    """
    torch = require("torch")
    if "torchvision" not in sys.modules:
        try:
            importlib.import_module("torchvision")
        except ImportError:
            pass
        except Exception:  # noqa: BLE001 - any failure inside torchvision's own import
            for name in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
                del sys.modules[name]
            sys.modules["torchvision"] = None  # type: ignore[assignment]  # find_spec -> None, import -> ImportError
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
