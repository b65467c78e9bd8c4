"""The Python API: each function opens the registry from the environment (or takes one) and calls
a service. Results are the services' frozen result objects."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from registry.config import Settings
from registry.services.context import Registry


def _registry(registry: Registry | None, settings: Settings | None) -> Registry:
    return registry or Registry.open(settings or Settings.from_env())


def add(path: str | Path, name: str, *, revision: str | None = None, manifest: str | Path | None = None,
        registry: Registry | None = None, settings: Settings | None = None) -> Any:
    from registry.services.add import add_folder

    return add_folder(_registry(registry, settings), path, name, revision=revision,
                      manifest_file=Path(manifest) if manifest else None)


def verify(*names: str, deep: bool = False, registry: Registry | None = None, settings: Settings | None = None) -> Any:
    from registry.services.verify import verify as _verify

    return _verify(_registry(registry, settings), names, deep=deep)
