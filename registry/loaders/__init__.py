"""Loader families: one module each, with ``load(request)`` and ``smoke(loaded, texts, image)``.

Modules are imported on first use; torch and the family libraries only inside their functions, so
``registry.loaders`` itself (the family table and the files each family needs) costs nothing.
"""

from __future__ import annotations

import importlib
from typing import cast

from registry.loaders.base import Family

MODULES = {
    "transformers": "registry.loaders.auto",
    "peft": "registry.loaders.adapter",
    "sentence-transformers": "registry.loaders.sbert",
    "colqwen2": "registry.loaders.colpali",
    "colpali": "registry.loaders.colpali",
    "bge-m3": "registry.loaders.bge_m3",
    "visualized-bge": "registry.loaders.visualized_bge",
    "remote-code": "registry.loaders.remote_code",
}

# Files a family cannot work without, whatever the manifest says: (role, file name).
# bge-m3: FlagEmbedding silently initialises both heads at random when one is absent.
REQUIRED_FILES: dict[str, tuple[tuple[str, str], ...]] = {
    "bge-m3": (("head", "colbert_linear.pt"), ("head", "sparse_linear.pt")),
    "peft": (("adapter", "adapter_config.json"), ("base", "config.json")),
}
# Roles a family needs in its manifest.
REQUIRED_ROLES: dict[str, tuple[str, ...]] = {
    "peft": ("adapter", "base"),
    "visualized-bge": ("visual", "config", "tokenizer"),
    "remote-code": ("code",),
}


def family(name: str) -> Family:
    from registry.errors import UsageError

    module = MODULES.get(name)
    if module is None:
        raise UsageError(f"no loader for family {name!r} (known: {', '.join(MODULES)})")
    return cast(Family, importlib.import_module(module))
