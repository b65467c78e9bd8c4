"""The catalog: typed SQLAlchemy models, engine set-up, migrations. Never imports the store.

Names resolve on first use, so that ``registry.catalog.states`` (pure) does not import SQLAlchemy.
"""

from __future__ import annotations

from typing import Any

__all__ = ["Catalog", "create_catalog_engine", "open_catalog"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from registry.catalog import engine

        return getattr(engine, name)
    raise AttributeError(f"module 'registry.catalog' has no attribute {name!r}")
