"""The catalog's rules are the database's rules: every test runs on SQLite and on the real Postgres."""

from __future__ import annotations

import pytest
import sqlalchemy.exc as sa_exc
from sqlalchemy import func, select, text

from registry.catalog.models import Blob, Event, File, Model, Repo, Revision

SHA = "a" * 64
B3 = "b" * 64
COMMIT = "c" * 40


def _revision(session) -> Revision:
    repo = Repo(repo_id="acme/tiny")
    rev = Revision(repo=repo, commit_sha=COMMIT, source="test")
    session.add_all([repo, rev, Blob(sha256=SHA, size=3, blake3=B3, git_sha1=None)])
    session.flush()
    return rev


def _refused(reg, build) -> sa_exc.DBAPIError:
    """Run ``build(session)`` in one transaction; the database must refuse it and keep nothing."""
    with pytest.raises(sa_exc.DBAPIError) as info:
        with reg.catalog.session() as session:
            build(session)
            session.flush()
    with reg.catalog.reader() as session:
        assert session.scalar(select(func.count()).select_from(Repo)) == 0
        assert session.scalar(select(func.count()).select_from(Blob)) == 0
    return info.value


@pytest.mark.parametrize("column, value", [
    ("sha256", "A" * 64),           # uppercase
    ("sha256", "a" * 63),           # short
    ("sha256", "g" * 64),           # not hex
    ("blake3", "z" * 64),
    ("git_sha1", "a" * 39),
    ("git_sha1", "A" * 40),
])
def test_blob_digest_formats_enforced_by_the_database(reg, column, value):
    fields = {"sha256": SHA, "size": 1, "blake3": B3, "git_sha1": None, column: value}
    err = _refused(reg, lambda s: s.add(Blob(**fields)))
    assert isinstance(err, sa_exc.IntegrityError)


def test_negative_size_refused(reg):
    assert isinstance(_refused(reg, lambda s: s.add(Blob(sha256=SHA, size=-1, blake3=B3))), sa_exc.IntegrityError)


def test_commit_sha_must_be_40_hex(reg):
    def build(s):
        s.add(Revision(repo=Repo(repo_id="acme/x"), commit_sha="main", source="test"))
    assert isinstance(_refused(reg, build), sa_exc.IntegrityError)


def test_duplicate_file_path_in_one_revision_refused(reg):
    def build(s):
        rev = _revision(s)
        for _ in range(2):
            s.add(File(revision=rev, path="config.json", size=3, blob_sha256=SHA, git_oid="d" * 40))
    assert isinstance(_refused(reg, build), sa_exc.IntegrityError)


@pytest.mark.parametrize("path", ["../etc/passwd", "/abs", "a/../b", "a\\b", "", "a/.."])
def test_file_path_must_stay_inside_the_repo(reg, path):
    def build(s):
        s.add(File(revision=_revision(s), path=path, size=3, blob_sha256=SHA, git_oid="d" * 40))
    assert isinstance(_refused(reg, build), sa_exc.IntegrityError)


def test_file_must_reference_a_known_blob(reg):
    def build(s):
        s.add(File(revision=_revision(s), path="x", size=3, blob_sha256="e" * 64, git_oid="d" * 40))
    assert isinstance(_refused(reg, build), sa_exc.IntegrityError)


def test_duplicate_repo_and_commit_refused(reg):
    def build(s):
        repo = Repo(repo_id="acme/x")
        s.add_all([repo, Revision(repo=repo, commit_sha=COMMIT, source="a"),
                   Revision(repo=repo, commit_sha=COMMIT, source="b")])
    assert isinstance(_refused(reg, build), sa_exc.IntegrityError)


@pytest.mark.parametrize("state, reason", [("loaded", None), ("quarantined", None), ("fetching", None),
                                           ("incomplete", None)])
def test_model_state_rules(reg, state, reason):
    def build(s):
        s.add(Model(name="acme/tiny", revision=_revision(s), family="transformers", state=state, state_reason=reason,
                    manifest={}, root_digest=SHA))
    assert isinstance(_refused(reg, build), sa_exc.IntegrityError)


def test_events_are_append_only(reg):
    with reg.catalog.session() as session:
        reg.log(session, "test", "acme/tiny", n=1)
    for sql in ("UPDATE events SET actor = 'mallory'", "DELETE FROM events"):
        with pytest.raises(sa_exc.DBAPIError, match="append-only"):
            with reg.catalog.session() as session:
                session.execute(text(sql))
    with reg.catalog.reader() as session:
        events = session.scalars(select(Event)).all()
    assert [(e.actor, e.host, e.action, e.subject, e.details) for e in events] == [
        ("tester", "test-node", "test", "acme/tiny", {"n": 1})]
    assert events[0].at is not None


def test_a_failed_transaction_records_nothing(reg):
    with pytest.raises(RuntimeError):
        with reg.catalog.session() as session:
            _revision(session)
            reg.log(session, "test", "x")
            raise RuntimeError("boom")
    with reg.catalog.reader() as session:
        for table in (Repo, Revision, Blob, Event):
            assert session.scalar(select(func.count()).select_from(table)) == 0


def test_sqlite_pragmas(reg):
    if not reg.settings.is_sqlite:
        pytest.skip("SQLite only")
    with reg.catalog.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 30_000
