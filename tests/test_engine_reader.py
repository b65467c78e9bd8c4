"""Readers never queue behind a writer (the mirror keeps answering while a pull records a model)."""

import threading

from sqlalchemy import text

from registry.catalog import open_catalog


def test_reader_does_not_wait_for_an_open_write_transaction(database_url):
    catalog = open_catalog(database_url)
    writing, release = threading.Event(), threading.Event()

    def writer():
        with catalog.session() as s:
            s.execute(text("INSERT INTO repos (repo_id, repo_type) VALUES ('acme/w', 'model')"))
            writing.set()
            release.wait(30)

    t = threading.Thread(target=writer)
    t.start()
    try:
        assert writing.wait(30)
        with catalog.reader() as s:  # would block until release on SQLite with BEGIN IMMEDIATE
            assert s.execute(text("SELECT count(*) FROM repos")).scalar() == 0
        assert not release.is_set()  # we read while the writer still held its transaction
    finally:
        release.set()
        t.join()
    with catalog.reader() as s:
        assert s.execute(text("SELECT count(*) FROM repos")).scalar() == 1
    catalog.engine.dispose()
