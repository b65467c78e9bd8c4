"""Import one module of a library without running the ``__init__`` of the packages above it.

A package's ``__init__`` often imports far more than one model needs: ``FlagEmbedding/__init__.py`` imports
every embedder and reranker it ships, and a reranker that breaks under a new transformers release
(``transformers.modeling_attn_mask_utils`` removed in 5.24) would make BGE-M3 unusable although its own
modules work. Python runs every parent package's ``__init__`` before a submodule; here each parent not yet
imported stands in ``sys.modules`` as a bare package (its ``__path__``, not its code) while the module asked
for, and what it imports itself, runs.

The bare parents are taken out again afterwards: code that later imports the library whole runs its real
``__init__`` files, which find the modules imported here in ``sys.modules`` and reuse them (one class each).
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from types import ModuleType


def _bare_package(name: str) -> ModuleType:
    spec = importlib.util.find_spec(name)  # its parent is in sys.modules already: no code runs
    if spec is None or spec.submodule_search_locations is None:
        raise ModuleNotFoundError(f"No module named {name!r}", name=name)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    parent, _, child = name.rpartition(".")
    if parent:
        setattr(sys.modules[parent], child, module)
    return module


def import_without_package_inits(module: str) -> ModuleType:
    if module in sys.modules:
        return sys.modules[module]
    parts = module.split(".")
    bare: list[str] = []
    try:
        for i in range(1, len(parts)):
            package = ".".join(parts[:i])
            if package not in sys.modules:
                _bare_package(package)
                bare.append(package)
        return importlib.import_module(module)
    finally:
        for package in reversed(bare):
            sys.modules.pop(package, None)
