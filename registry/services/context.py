"""The open registry: settings, catalog and store, handed to every use case."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from registry.catalog import Catalog, open_catalog
from registry.catalog.models import Event
from registry.config import Settings
from registry.store import BlobStore, StatCache


@dataclass(frozen=True)
class Registry:
    settings: Settings
    catalog: Catalog
    store: BlobStore
    stat_cache: StatCache

    @classmethod
    def open(cls, settings: Settings | None = None) -> "Registry":
        settings = settings or Settings.from_env()
        settings.home.mkdir(parents=True, exist_ok=True)
        store = BlobStore(settings.blobs_dir)
        store.ensure()
        return cls(
            settings=settings,
            catalog=open_catalog(settings.database_url),
            store=store,
            stat_cache=store.stat_cache,
        )

    def log(self, session: Session, action: str, subject: str, **details: Any) -> None:
        """Append to the event log inside the caller's transaction."""
        session.add(Event(actor=self.settings.actor, host=self.settings.host, action=action, subject=subject,
                          details=details))

    def log_now(self, action: str, subject: str, **details: Any) -> None:
        """Append an event in its own transaction (for refusals, whose own work was rolled back)."""
        with self.catalog.session() as session:
            self.log(session, action, subject, **details)

    def close(self) -> None:
        self.catalog.engine.dispose()

    def __enter__(self) -> "Registry":
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()
