"""``registry history``: the append-only event log, newest first, filtered; and the ``--since`` parser.

Every use case appends its events (services/context.py ``Registry.log``): pull, add, register, quarantine,
release, merge, export, import, deploy, undeploy, rm, verify, audit (each node's ``--verify`` result and each
scan), gc, load, and the refusals (``add.refused``, ``pull.refused``, ...). A kind selects its action and its
sub-actions (``pull`` also shows ``pull.refused``). Paging is by id (``before``), so a page never shifts while
new events arrive.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from registry.catalog.models import Event
from registry.errors import UsageError
from registry.services.context import Registry
from registry.services.fleet import utc

KNOWN_KINDS = ("pull", "add", "register", "quarantine", "release", "merge", "export", "import", "deploy", "undeploy",
               "rm", "verify", "audit", "gc", "load")
MAX_LIMIT = 10_000
_AGE = re.compile(r"(\d{1,9})\s*(s|m|min|h|d|w)", re.ASCII)
_UNITS = {"s": 1, "m": 60, "min": 60, "h": 3600, "d": 86400, "w": 604800}


@dataclass(frozen=True)
class EventView:
    id: int
    at: dt.datetime
    action: str
    subject: str
    actor: str
    host: str
    details: dict[str, Any]


@dataclass(frozen=True)
class HistoryPage:
    events: tuple[EventView, ...]
    older: int | None  # pass as ``before`` for the next page; None: this is the oldest


def parse_since(text: str, *, now: dt.datetime | None = None) -> dt.datetime:
    """``2026-05-01``, ``2026-05-01T12:00``, ``...Z`` / ``+02:00`` (no zone: UTC), or an age: ``30m``, ``2h``,
    ``7d``, ``1w``, ``90s``."""
    value = (text or "").strip()
    now = now or dt.datetime.now(dt.timezone.utc)
    age = _AGE.fullmatch(value)
    try:
        if age:
            return now - dt.timedelta(seconds=int(age.group(1)) * _UNITS[age.group(2)])
        if value.endswith(("Z", "z")):
            value = value[:-1] + "+00:00"
        parsed = dt.datetime.fromisoformat(value) if value else None
    except (ValueError, OverflowError):
        parsed = None
    if parsed is None:
        raise UsageError(f"--since {text!r}: give a date (2026-05-01), a time (2026-05-01T12:00Z) or an age "
                         "(30m, 2h, 7d, 1w)", details={"since": text})
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.timezone.utc)


def _check_kinds(session: Session, kinds: Sequence[str]) -> None:
    if not kinds:
        return
    present = {a.split(".", 1)[0] for a in session.scalars(select(Event.action).distinct())}
    unknown = [k for k in kinds if k not in KNOWN_KINDS and k not in present]
    if unknown:
        raise UsageError(f"--kind {', '.join(unknown)}: not an event kind; choose from {', '.join(KNOWN_KINDS)}",
                         details={"unknown": unknown})


def _like_literal(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def history(reg: Registry, *, name: str | None = None, since: dt.datetime | None = None, kinds: Sequence[str] = (),
            node: str | None = None, actor: str | None = None, limit: int = 100, before: int | None = None,
            readable: frozenset[str] | None = None) -> HistoryPage:
    """Events, newest first. ``name`` matches the subject (or one of an export's comma-separated subjects);
    ``readable`` (the web page's token policy) keeps only events about those names."""
    if not 1 <= limit <= MAX_LIMIT:
        raise UsageError(f"--limit {limit}: give 1 to {MAX_LIMIT}")
    with reg.catalog.reader() as session:
        _check_kinds(session, kinds)
        q = select(Event)
        if name:
            lit = _like_literal(name)
            q = q.where(or_(Event.subject == name, Event.subject.like(f"{lit},%", escape="\\"),
                            Event.subject.like(f"%,{lit}", escape="\\"), Event.subject.like(f"%,{lit},%", escape="\\")))
        if kinds:
            q = q.where(or_(*[or_(Event.action == k, Event.action.like(f"{_like_literal(k)}.%", escape="\\"))
                              for k in kinds]))
        if since is not None:
            q = q.where(Event.at >= since)
        if node:
            q = q.where(Event.host == node)
        if actor:
            q = q.where(Event.actor == actor)
        if before is not None:
            q = q.where(Event.id < before)
        if readable is not None:
            q = q.where(Event.subject.in_(sorted(readable)))
        rows = list(session.scalars(q.order_by(Event.id.desc()).limit(limit + 1)))
    events = tuple(EventView(e.id, utc(e.at), e.action, e.subject, e.actor, e.host, dict(e.details or {}))  # type: ignore[arg-type]
                   for e in rows[:limit])
    return HistoryPage(events, events[-1].id if len(rows) > limit else None)
