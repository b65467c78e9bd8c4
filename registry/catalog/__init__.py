"""The catalog: typed SQLAlchemy models, engine set-up, migrations. Never imports the store."""

from registry.catalog.engine import Catalog, create_catalog_engine, open_catalog

__all__ = ["Catalog", "create_catalog_engine", "open_catalog"]
