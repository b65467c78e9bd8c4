"""One module owns the model states and their transitions (registry/catalog/states.py): the rules, and a
check that no other module spells a state out."""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

from registry.catalog import states

PACKAGE = Path(states.__file__).resolve().parent.parent


@dataclass
class Row:
    state: str
    state_reason: str | None = None


def test_no_module_but_the_state_module_spells_a_state():
    names = set(states.STATES) | {"fetching", "incomplete"}
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path == Path(states.__file__).resolve():
            continue
        tree = ast.parse(path.read_text())
        docstrings = {id(n.body[0].value) for n in ast.walk(tree)
                      if isinstance(n, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
                      and n.body and isinstance(n.body[0], ast.Expr) and isinstance(n.body[0].value, ast.Constant)}
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and node.value in names and id(node) not in docstrings:
                # an error kind (IncompleteModel.kind), a scan verdict and a temp-file suffix are not states
                if not (path.name in ("errors.py", "scan.py", "deploy.py") and node.value == "incomplete"):
                    found.append(f"{path.relative_to(PACKAGE)}:{node.lineno}: {node.value!r}")
    assert found == []


@pytest.mark.parametrize("old, same, claimed, expected", [
    (None, False, states.VERIFIED, (states.VERIFIED, None)),                        # a new model
    (Row("registered"), True, states.VERIFIED, (states.REGISTERED, None)),          # the smoke proved these bytes
    (Row("registered"), False, states.VERIFIED, (states.VERIFIED, None)),           # new bytes or manifest
    (Row("quarantined", "verify: x changed"), True, states.VERIFIED, (states.VERIFIED, None)),  # bytes proven
    (Row("quarantined", "smoke: NaN"), True, states.VERIFIED, (states.QUARANTINED, "smoke: NaN")),  # register lifts
    (Row("quarantined", "merge proof: differs"), True, states.VERIFIED,
     (states.QUARANTINED, "merge proof: differs")),                                 # merge lifts
    (Row("quarantined", "smoke: NaN"), False, states.VERIFIED, (states.VERIFIED, None)),  # a corrected manifest
    (Row("verified"), True, states.REGISTERED, (states.REGISTERED, None)),          # an import of a registered model
])
def test_what_a_re_recorded_model_keeps(old, same, claimed, expected):
    assert states.on_record(old, same=same, state=claimed) == expected


def test_each_cause_names_its_lift():
    assert states.cause_of("verify: a/b changed") is states.Cause.BYTES
    assert states.cause_of("smoke: NaN") is states.Cause.SMOKE
    assert states.cause_of("merge proof: differs") is states.Cause.MERGE
    assert states.cause_of("something an older registry wrote") is states.Cause.SMOKE  # the model's own: register
    assert "pull or add acme/x again" in states.lifted_by("verify: x", "acme/x")
    assert "registry register acme/x" in states.lifted_by("smoke: x", "acme/x")
    assert "registry merge ADAPTER --name acme/x" in states.lifted_by("merge proof: x", "acme/x")


def test_transitions_on_a_row():
    row = Row("verified")
    assert states.quarantine(row, states.Cause.BYTES, "a changed") is True
    assert (row.state, row.state_reason) == ("quarantined", "verify: a changed")
    assert states.quarantine(row, states.Cause.BYTES, "a changed") is False  # nothing new: not logged twice
    assert states.lift(row, states.Cause.SMOKE) is False  # only the quarantine's own cause lifts it
    assert states.lift(row, states.Cause.BYTES) is True and (row.state, row.state_reason) == ("verified", None)
    states.register(row)
    assert (row.state, row.state_reason) == ("registered", None)
