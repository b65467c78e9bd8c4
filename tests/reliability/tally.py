"""Figures for docs/reliability.md: each reliability test counts what it tried, what the registry caught and
what escaped, per kind of fault ("kill -9: add", "corruption: store", "hostile: url", ...).

A test asks the ``trials`` fixture for a tally, records every case, and asserts ``tally.escaped == []``; the
counts travel in the test report's user_properties (xdist carries them to the controller), and
tests/conftest.py sums them into a table at the end of the run (and into $REGISTRY_RELIABILITY_REPORT as JSON).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

PROPERTY = "reliability"

# the long variants (50 kill trials instead of 10, bigger fuzz budgets): REGISTRY_RELIABILITY_LONG=1
LONG = os.environ.get("REGISTRY_RELIABILITY_LONG") == "1"


def budget(ci: int, long: int) -> int:
    """How many trials a randomized test runs: ``ci`` in CI and plain runs, ``long`` in the long variant."""
    return long if LONG else ci


@dataclass
class Tally:
    kind: str
    tried: int = 0
    caught: int = 0
    escaped: list[str] = field(default_factory=list)

    def record(self, case: str, caught: bool) -> None:
        """One trial: ``caught`` is True when the registry gave the right answer (a clear refusal, a repair,
        or a consistent state), False when the fault escaped; ``case`` names it for the failure message."""
        self.tried += 1
        if caught:
            self.caught += 1
        else:
            self.escaped.append(case)

    def as_property(self) -> tuple[str, dict]:
        return PROPERTY, {"kind": self.kind, "tried": self.tried, "caught": self.caught,
                          "escaped": len(self.escaped)}


def summed(reports: list[dict]) -> dict[str, dict[str, int]]:
    totals: dict[str, dict[str, int]] = {}
    for r in reports:
        t = totals.setdefault(r["kind"], {"tried": 0, "caught": 0, "escaped": 0})
        for key in t:
            t[key] += r[key]
    return dict(sorted(totals.items()))


def markdown(totals: dict[str, dict[str, int]]) -> str:
    lines = ["| kind | tried | caught | escaped |", "|---|---:|---:|---:|"]
    lines += [f"| {k} | {v['tried']} | {v['caught']} | {v['escaped']} |" for k, v in totals.items()]
    all_ = {key: sum(v[key] for v in totals.values()) for key in ("tried", "caught", "escaped")}
    lines.append(f"| **all** | {all_['tried']} | {all_['caught']} | {all_['escaped']} |")
    return "\n".join(lines)
