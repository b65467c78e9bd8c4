"""registry: a model artifact registry with manifest verification.

The Python API mirrors the CLI; heavy modules load on first use so ``import registry`` stays cheap
(and works on a mirror host without torch).

    import registry
    result = registry.pull("vidore/colqwen2-v0.1")          # -> PullResult
    model, processor = registry.load("vidore/colqwen2-v0.1")
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

__version__ = "0.1.0"

# public name -> "module:attribute" (resolved lazily)
_API = {
    "Settings": "registry.config:Settings",
    "Registry": "registry.services.context:Registry",
    "add": "registry.api:add",
    "pull": "registry.api:pull",
    "verify": "registry.api:verify",
    "load": "registry.api:load",
    "register": "registry.api:register",
    "sign": "registry.api:sign",
    "verify_signature": "registry.api:verify_signature",
}

__all__ = sorted(_API)


def __getattr__(name: str) -> Any:
    target = _API.get(name)
    if target is None:
        raise AttributeError(f"module 'registry' has no attribute {name!r}")
    module, attr = target.split(":")
    return getattr(import_module(module), attr)
