"""``registry history`` (alias ``log``): the event log of real commands on SQLite and Postgres, its filters and paging,
and the ``--since`` parser fuzzed."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from registry.errors import UsageError
from registry.services.history import parse_since
from tests.serve_helpers import add_registered, make_tiny_repo

REPO = "acme/tiny"


def _actions(result) -> list[str]:
    return [e["action"] for e in result.json()["events"]]


def test_every_kind_of_event_with_who_host_and_when(cli, reg, tmp_path, monkeypatch):
    add_registered(reg, make_tiny_repo(tmp_path / "m", big=False), REPO)
    target = tmp_path / "plain"
    assert cli("deploy", REPO, "--target", target, "--layout", "dir").exit_code == 0
    assert cli("audit", "--verify").exit_code == 0
    assert cli("export", REPO, "--output", tmp_path / "b.tar").exit_code == 0
    assert cli("verify").exit_code == 0
    assert cli("undeploy", REPO, "--target", target).exit_code == 0
    monkeypatch.setenv("REGISTRY_NODE", "gpu-09")
    monkeypatch.setenv("REGISTRY_ACTOR", "ops")
    assert cli("rm", REPO).exit_code == 0
    assert cli("gc", "--grace", "0").exit_code == 0

    r = cli("history", "--json")
    assert r.exit_code == 0
    events = r.json()["events"]
    assert [e["action"] for e in events] == ["gc", "rm", "undeploy", "verify", "export", "audit", "deploy", "add"]
    assert [e["id"] for e in events] == sorted((e["id"] for e in events), reverse=True)
    assert {(e["actor"], e["host"]) for e in events[:2]} == {("ops", "gpu-09")}
    assert {(e["actor"], e["host"]) for e in events[2:]} == {("tester", "test-node")}
    assert all(dt.datetime.fromisoformat(e["at"]).tzinfo is not None for e in events)
    audit = next(e for e in events if e["action"] == "audit")
    assert audit["subject"] == "test-node" and audit["details"]["by_state"] == {"ok": 1}

    assert _actions(cli("history", REPO, "--json")) == ["rm", "undeploy", "export", "deploy", "add"]
    assert _actions(cli("history", "--kind", "deploy", "--kind", "undeploy", "--json")) == ["undeploy", "deploy"]
    assert _actions(cli("history", "--node", "gpu-09", "--json")) == ["gc", "rm"]
    assert _actions(cli("history", "--actor", "ops", "--kind", "rm", "--json")) == ["rm"]
    assert len(cli("history", "--since", "1h", "--json").json()["events"]) == len(events)
    future = (dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=1)).strftime("%Y-%m-%dT%H:%MZ")
    assert cli("history", "--since", future, "--json").json()["events"] == []

    page = cli("history", "--limit", "3", "--json").json()
    assert [e["action"] for e in page["events"]] == ["gc", "rm", "undeploy"] and page["older"] == page["events"][-1]["id"]
    rest = cli("history", "--limit", "3", "--before", page["older"], "--json").json()
    assert [e["action"] for e in rest["events"]] == ["verify", "export", "audit"]

    text = cli("log", REPO)  # the name for it
    assert text.exit_code == 0 and "undeploy" in text.stdout and "tester" in text.stdout


def test_pull_kind_includes_its_refusals(cli, reg, tmp_path):
    reg.log_now("pull.refused", "acme/x", error="IntegrityError")
    reg.log_now("pull", "acme/x", state="verified")
    assert _actions(cli("history", "--kind", "pull", "--json")) == ["pull", "pull.refused"]
    # a subject with LIKE wildcards matches itself only
    reg.log_now("add", "acme/a_b")
    reg.log_now("add", "acme/aXb")
    assert [e["subject"] for e in cli("history", "acme/a_b", "--json").json()["events"]] == ["acme/a_b"]


def test_bad_arguments(cli):
    r = cli("history", "--since", "yesterday-ish")
    assert r.exit_code == 2 and "--since 'yesterday-ish'" in r.stderr and "7d" in r.stderr
    r = cli("history", "--kind", "deploi", "--json")
    assert r.exit_code == 2 and "deploi" in r.json()["message"] and "deploy" in r.json()["message"]
    assert cli("history", "--limit", "0").exit_code == 2
    assert cli("history", "--since", "99999999999d").exit_code == 2


NOW = dt.datetime(2026, 5, 1, 12, 0, tzinfo=dt.timezone.utc)


def test_since_forms():
    assert parse_since("2h", now=NOW) == NOW - dt.timedelta(hours=2)
    assert parse_since("7d", now=NOW) == NOW - dt.timedelta(days=7)
    assert parse_since("30min", now=NOW) == NOW - dt.timedelta(minutes=30)
    assert parse_since("2026-04-01") == dt.datetime(2026, 4, 1, tzinfo=dt.timezone.utc)
    assert parse_since("2026-04-01T10:30Z") == dt.datetime(2026, 4, 1, 10, 30, tzinfo=dt.timezone.utc)
    assert parse_since("2026-04-01T10:30+02:00").utcoffset() == dt.timedelta(hours=2)


@settings(max_examples=400, deadline=None)
@given(st.one_of(st.text(max_size=40), st.from_regex(r"\d{1,12}\s*(s|m|min|h|d|w)", fullmatch=True),
                 st.datetimes().map(lambda d: d.isoformat())))
def test_since_parser_never_fails_any_other_way(text):
    try:
        got = parse_since(text, now=NOW)
    except UsageError as exc:
        assert "--since" in exc.message
    else:
        assert got.tzinfo is not None


@pytest.mark.parametrize("text", ["", "  ", "1y", "-1d", "2026-13-01", "1e3d", "now"])
def test_since_rejects(text):
    with pytest.raises(UsageError):
        parse_since(text, now=NOW)
