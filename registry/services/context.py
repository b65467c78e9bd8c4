"""The open registry: settings, catalog and store, handed to every use case."""

from __future__ import annotations

from dataclasses import dataclass, field
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
    # what opening found that the user should hear of (a new catalog over a full store, leftovers cleaned)
    opened_notes: tuple[str, ...] = field(default=())

    @classmethod
    def open(cls, settings: Settings | None = None) -> "Registry":
        settings = settings or Settings.from_env()
        settings.home.mkdir(parents=True, exist_ok=True)
        store = BlobStore(settings.blobs_dir)
        store.ensure()
        catalog = open_catalog(settings.database_url)
        notes: list[str] = []
        # every command cleans the staging folders of operations that died (kill -9 of an add, an import)
        cleaned = store.clean_dead_staging()
        if cleaned:
            notes.append(f"removed the staging folder of {len(cleaned)} interrupted operation(s) in {store.root / 'tmp'}")
        if catalog.created:
            notes.extend(_orphaned_store(settings, catalog, store))
        return cls(settings=settings, catalog=catalog, store=store, stat_cache=store.stat_cache,
                   opened_notes=tuple(notes))

    def notes(self) -> list[str]:
        """Everything worth telling the user about this registry's state (printed by the CLI after a command)."""
        return [*self.opened_notes, *self.stat_cache.notes]

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


def _orphaned_store(settings: Settings, catalog: Catalog, store: BlobStore) -> list[str]:
    """A catalog created just now over a store that already holds blobs: the catalog was deleted or replaced
    (``rm catalog.db``), and every model of the store is unknown to it. Say so, once, and log it."""
    count = sum(1 for _ in store.iter_blobs())
    if not count:
        return []
    where = catalog.engine.url.render_as_string()
    message = (f"the catalog {where} was created just now, but the store {store.root} already holds {count} blob(s): "
               "was the catalog deleted or replaced? Restore it from a backup (its event log and every model record "
               "are in it; the blobs are untouched), or re-add / re-pull the models (their stored blobs are reused). "
               "Do not run `registry gc` before that: it would delete every blob the new catalog does not know")
    with catalog.session() as session:
        session.add(Event(actor=settings.actor, host=settings.host, action="catalog.created", subject="catalog",
                          details={"store_blobs": count, "store": str(store.root)}))
    return [message]
