"""The fleet as the catalog sees it: one row per live deployment, on every node, with its state.

Read by ``registry audit`` (all rows) and by the ``/ui`` page (a page of rows, filtered, counted by state). A row's
state is computed by the database, so filtering, counting and paging by state cost one query each, whatever the
number of deployments:

    missing        the last `audit --verify` on its node found the target gone
    drifted        ... found files changed, missing or extra, or the target replaced (a symlink, a file)
    quarantined    the model was quarantined after it was deployed (deploy refuses quarantined models)
    unregistered   the model is no longer registered for another reason (its state says which)
    bad-signature  the copy's signature does not verify (once signatures exist: services/audit_signature.py)
    unsigned       the catalog holds a signature and the copy has none
    stale          a newer registered revision of the same model exists (recorded later)
    ok             none of the above

The first that applies wins; the verification columns (when, by whom, what) travel with every row.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Select, and_, case, func, or_, select
from sqlalchemy.orm import Session, aliased

from registry.catalog.models import Deployment, Model, Revision
from registry.catalog.queries import split_ref
from registry.catalog import states
from registry.errors import ModelNotFound
from registry.services.audit_signature import NO_SIGNATURE, catalog_signatures

# the two state names the fleet view needs (registry/catalog/states.py owns them)
REGISTERED, QUARANTINED = states.REGISTERED, states.QUARANTINED
FLEET_STATES = ("missing", "drifted", QUARANTINED, "unregistered", "bad-signature", "unsigned", "stale", "ok")


@dataclass(frozen=True)
class FleetFilter:
    node: str | None = None
    models: tuple[str, ...] = ()          # NAME or NAME@COMMIT-PREFIX
    state: str | None = None
    readable: frozenset[str] | None = None  # model names the caller may see (None: all)


@dataclass(frozen=True)
class Drift:
    """What the last on-disk check found (lists are capped; ``more`` counts what was left out)."""

    target: str | None = None
    changed: tuple[str, ...] = ()
    missing: tuple[str, ...] = ()
    extra: tuple[str, ...] = ()
    store_lost: tuple[str, ...] = ()
    more: int = 0
    signature: str = ""  # why the copy's model.sig is a finding (unsigned / bad-signature), when it is
    leftovers: tuple[str, ...] = ()  # temp files and staging folders of killed deploys (deploy again removes them)

    @classmethod
    def from_json(cls, data: dict[str, Any] | None) -> "Drift":
        if not data:
            return NO_DRIFT
        return cls(data.get("target"), tuple(data.get("changed", ())), tuple(data.get("missing", ())),
                   tuple(data.get("extra", ())), tuple(data.get("store_lost", ())), int(data.get("more", 0)),
                   str(data.get("signature", "")), tuple(data.get("leftovers", ())))

    def to_json(self) -> dict[str, Any]:
        return {"target": self.target, "changed": list(self.changed), "missing": list(self.missing),
                "extra": list(self.extra), "store_lost": list(self.store_lost), "more": self.more,
                "signature": self.signature, "leftovers": list(self.leftovers)}

    def summary(self) -> str:
        parts = [self.target] if self.target else []
        for label, items in (("changed", self.changed), ("missing", self.missing), ("extra", self.extra),
                             ("store lost", self.store_lost),
                             ("left by a killed deploy (deploy again removes it)", self.leftovers)):
            if items:
                parts.append(f"{label}: {', '.join(items)}")
        if self.more:
            parts.append(f"and {self.more} more")
        if self.signature:
            parts.append(self.signature)
        return "; ".join(parts)


NO_DRIFT = Drift()
_EMPTY_DRIFT_JSON = NO_DRIFT.to_json()


def _iso(value: dt.datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


@dataclass(frozen=True)
class FleetRow:
    deployment_id: int
    model_id: int
    node: str
    name: str
    commit: str
    root_digest: str
    layout: str
    path: str
    deployed_at: dt.datetime
    deployed_by: str
    state: str
    model_state: str
    model_state_reason: str | None
    newest_commit: str | None     # the newer registered revision, when the row is stale
    verified_at: dt.datetime | None
    verified_by: str | None
    verified_host: str | None
    verify_state: str | None
    signature: str
    drift: Drift = field(default_factory=Drift)

    def to_json(self) -> dict[str, Any]:
        """The row's JSON form, written out by hand: `audit --json` prints tens of thousands of them."""
        return {"deployment_id": self.deployment_id, "model_id": self.model_id, "node": self.node, "name": self.name,
                "commit": self.commit, "root_digest": self.root_digest, "layout": self.layout, "path": self.path,
                "deployed_at": _iso(self.deployed_at), "deployed_by": self.deployed_by, "state": self.state,
                "model_state": self.model_state, "model_state_reason": self.model_state_reason,
                "newest_commit": self.newest_commit, "verified_at": _iso(self.verified_at),
                "verified_by": self.verified_by, "verified_host": self.verified_host,
                "verify_state": self.verify_state, "signature": self.signature,
                "drift": self.drift.to_json() if self.drift is not NO_DRIFT else _EMPTY_DRIFT_JSON}


def utc(value: dt.datetime | None) -> dt.datetime | None:
    """SQLite hands timestamps back naive; they were written in UTC."""
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=dt.timezone.utc)


def _newest_registered() -> Any:
    return (select(Model.name.label("name"), func.max(Model.id).label("newest_id"))
            .where(Model.state == REGISTERED).group_by(Model.name).subquery("newest"))


def _state_expr(newest: Any) -> Any:
    return case(
        (Deployment.verify_state == "missing", "missing"),
        (Deployment.verify_state == "drifted", "drifted"),
        (Model.state == QUARANTINED, QUARANTINED),
        (Model.state != REGISTERED, "unregistered"),
        (Deployment.signature_state == "bad-signature", "bad-signature"),
        (Deployment.signature_state == "unsigned", "unsigned"),
        (newest.c.newest_id > Model.id, "stale"),
        else_="ok",
    )


def _filtered(session: Session, stmt: Select, flt: FleetFilter, state: Any) -> Select:
    stmt = stmt.where(Deployment.removed_at.is_(None))
    if flt.node is not None:
        stmt = stmt.where(Deployment.node == flt.node)
    if flt.models:
        wanted = []
        for spec in flt.models:
            name, rev = split_ref(spec)
            if session.scalar(select(Model.id).where(Model.name == name).limit(1)) is None:
                raise ModelNotFound(f"no model named {name!r} in the catalog; see `registry list`",
                                    details={"name": name})
            wanted.append(and_(Model.name == name, Deployment.commit_sha.startswith(rev)) if rev
                          else Model.name == name)
        stmt = stmt.where(or_(*wanted))
    if flt.readable is not None:
        stmt = stmt.where(Model.name.in_(sorted(flt.readable)))
    if flt.state is not None:
        stmt = stmt.where(state == flt.state)
    return stmt


def fleet_rows(session: Session, flt: FleetFilter = FleetFilter(), *, limit: int | None = None,
               offset: int = 0) -> list[FleetRow]:
    """Live deployments by node, then in the order they were made."""
    newest = _newest_registered()
    state = _state_expr(newest)
    newer = aliased(Model)
    newer_rev = aliased(Revision)
    stmt = (select(Deployment.id, Deployment.node, Model.name, Deployment.commit_sha, Deployment.root_digest,
                   Deployment.layout, Deployment.path, Deployment.created_at, Deployment.actor, state,
                   Model.state, Model.state_reason, newer_rev.commit_sha, Deployment.verified_at,
                   Deployment.verified_by, Deployment.verified_host, Deployment.verify_state,
                   Deployment.signature_state, Deployment.verify_problems, Model.id)
            .join(Model, Model.id == Deployment.model_id)
            .outerjoin(newest, newest.c.name == Model.name)
            .outerjoin(newer, and_(newer.id == newest.c.newest_id, newer.id > Model.id))
            .outerjoin(newer_rev, newer_rev.id == newer.revision_id))
    stmt = _filtered(session, stmt, flt, state).order_by(Deployment.node, Deployment.id)
    if limit is not None:
        stmt = stmt.limit(limit).offset(offset)
    rows = session.connection().execute(stmt).all()  # Core rows: no ORM loading layer for tens of thousands
    signatures = catalog_signatures(session, {r[19] for r in rows})
    return [
        FleetRow(deployment_id=r[0], model_id=r[19], node=r[1], name=r[2], commit=r[3], root_digest=r[4], layout=r[5], path=r[6],
                 deployed_at=utc(r[7]), deployed_by=r[8], state=r[9], model_state=r[10],  # type: ignore[arg-type]
                 model_state_reason=r[11], newest_commit=r[12], verified_at=utc(r[13]), verified_by=r[14],
                 verified_host=r[15], verify_state=r[16],
                 signature=r[17] or signatures.get(r[19], NO_SIGNATURE).state, drift=Drift.from_json(r[18]))
        for r in rows
    ]


def fleet_counts(session: Session, flt: FleetFilter = FleetFilter()) -> dict[str, int]:
    """Rows per state for the filter (its ``state`` ignored), in FLEET_STATES order, zeros left out."""
    newest = _newest_registered()
    state = _state_expr(newest)
    stmt = (select(state, func.count()).select_from(Deployment)
            .join(Model, Model.id == Deployment.model_id)
            .outerjoin(newest, newest.c.name == Model.name))
    stmt = _filtered(session, stmt, FleetFilter(flt.node, flt.models, None, flt.readable), state).group_by(state)
    found = dict(session.execute(stmt).all())
    return {s: int(found[s]) for s in FLEET_STATES if found.get(s)}


def fleet_nodes(session: Session, readable: frozenset[str] | None = None) -> list[str]:
    """Nodes with at least one live deployment (of a readable model)."""
    q = select(Deployment.node).where(Deployment.removed_at.is_(None))
    if readable is not None:
        q = q.join(Model, Model.id == Deployment.model_id).where(Model.name.in_(sorted(readable)))
    return list(session.scalars(q.distinct().order_by(Deployment.node)))


def model_revisions(session: Session, name: str) -> list[tuple[str, str]]:
    """(commit, state) of every catalogued revision of a model, newest first."""
    return [(c, s) for c, s in session.execute(
        select(Revision.commit_sha, Model.state).join(Revision, Revision.id == Model.revision_id)
        .where(Model.name == name).order_by(Model.id.desc()))]


def readable_names(session: Session, allowed: Any) -> frozenset[str] | None:
    """The model names ``allowed(name)`` accepts, or None when it accepts every one (no filter needed)."""
    names = list(session.scalars(select(Model.name).distinct()))
    ok = frozenset(n for n in names if allowed(n))
    return None if len(ok) == len(names) else ok
