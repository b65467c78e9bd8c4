"""A model's states and every transition between them, in one place (docs/catalog.md, "States").

    (ingest: add, pull, import)  ──▶  verified ──(register: smoke passes)──▶ registered
                                          │  ▲                                  │
        verify: a blob missing/changed ───┼──┼──────────────────────────────────┤
        register: the model's own fault ──┤  │                                  │
        merge: merged output differs ─────┤  │                                  │
                                          ▼  │                                  ▼
                                       quarantined(cause) ──(the cause's lift)──┘

A quarantine's reason starts with its cause (``verify: ...``, ``smoke: ...``, ``merge proof: ...``), and each
cause has one lift: bytes proven again (any ingest of those bytes, or a clean ``verify``) release a ``verify``
quarantine to ``verified``; a passing ``register`` lifts a ``smoke`` quarantine; a passing ``merge`` proof
lifts a ``merge proof`` quarantine. Environment faults (a library that cannot import) never quarantine.

Rows are anything with ``state`` and ``state_reason`` (the catalog's Model), so this module imports no
table and the tables can import it.
"""

from __future__ import annotations

import enum
from typing import Protocol

VERIFIED = "verified"        # every required byte is in the store and proven; no smoke has proven the model
REGISTERED = "registered"    # verified, and its family's library loaded it and ran the smoke twice, identically
QUARANTINED = "quarantined"  # never loaded, served or deployed until its cause is lifted
STATES = (VERIFIED, REGISTERED, QUARANTINED)
LOADABLE = (VERIFIED, REGISTERED)  # load, export and (re-)registration take these
SERVED = (REGISTERED,)             # serve and deploy take only these


class Cause(enum.Enum):
    """Why a model is quarantined; the value is the prefix of its reason."""

    BYTES = "verify"        # a blob missing or changed in the store
    SMOKE = "smoke"         # the model itself: missing/unexpected keys, heads or adapter not applied, NaN, shapes
    MERGE = "merge proof"   # a merged model whose output differs from its adapter over its base

    def reason(self, detail: str) -> str:
        return f"{self.value}: {detail}"


def cause_of(reason: str | None) -> Cause:
    """The cause a reason names; a reason of an unknown cause counts as the model's own (lifted by register)."""
    for cause in Cause:
        if (reason or "").startswith(cause.value + ":"):
            return cause
    return Cause.SMOKE


class Row(Protocol):
    state: str
    state_reason: str | None


def quarantine(row: Row, cause: Cause, detail: str) -> bool:
    """Quarantine ``row``; returns whether anything changed (an identical quarantine is not logged twice)."""
    reason = cause.reason(detail)
    changed = (row.state, row.state_reason) != (QUARANTINED, reason)
    row.state, row.state_reason = QUARANTINED, reason
    return changed


def register(row: Row) -> None:
    row.state, row.state_reason = REGISTERED, None


def lift(row: Row, cause: Cause) -> bool:
    """End a quarantine of ``cause`` (its lift has just happened): back to ``verified``. Returns whether it did."""
    if row.state != QUARANTINED or cause_of(row.state_reason) is not cause:
        return False
    row.state, row.state_reason = VERIFIED, None
    return True


def on_record(old: Row | None, *, same: bool, state: str = VERIFIED, reason: str | None = None
              ) -> tuple[str, str | None]:
    """The state a model takes when an ingest (re-)records it with ``state`` (verified, or an import's state).

    ``same``: the recorded row has the very same resolved manifest and root digest. New bytes or a new
    manifest take the new state. The same record keeps what its bytes do not decide: ``registered`` (the
    smoke proved these bytes) and a quarantine of the model's own fault (``register`` lifts it); a
    blob-caused quarantine is lifted, since the ingest has just proven every byte again.
    """
    if old is None or not same:
        return state, reason
    if old.state == REGISTERED and state == VERIFIED:
        return REGISTERED, None
    if old.state == QUARANTINED and cause_of(old.state_reason) is not Cause.BYTES:
        return QUARANTINED, old.state_reason
    return state, reason


def lifted_by(reason: str | None, name: str) -> str:
    """What lifts the quarantine ``reason`` names, as an instruction."""
    cause = cause_of(reason)
    if cause is Cause.BYTES:
        return (f"pull or add {name} again (or restore the blob): proven bytes repair the store and release it; "
                "`registry verify` releases it too once its blobs are intact")
    if cause is Cause.MERGE:
        return f"fix the cause, then run `registry merge ADAPTER --name {name}` again: a passing proof lifts it"
    return f"fix the cause (a corrected manifest, other bytes), then run `registry register {name}`"
