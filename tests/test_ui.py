"""The ``/ui`` page of ``registry serve``: the real ASGI app under uvicorn on loopback, read with httpx and with headless
Chromium (Debian's ``chromium``); pagination and filters in the query string, the mirror's tokens, bad queries."""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
from pathlib import Path

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from registry.catalog.models import Deployment, Model
from registry.server.auth import TokenPolicy
from registry.server.ui import BadQuery, FleetQuery, parse_events_query, parse_fleet_query
from tests.serve_helpers import add_registered, make_tiny_repo, serve, set_state

TOKEN = "ops-token-0123456789"


def _many_deployments(reg, name: str, n: int, *, node_of=lambda i: f"gpu-{i % 3:02d}") -> None:
    with reg.catalog.session() as session:
        model = session.scalars(select(Model).where(Model.name == name)).one()
        session.add_all([Deployment(model_id=model.id, node=node_of(i), path=f"/models/{name}/{i}", layout="dir",
                                    commit_sha=model.revision.commit_sha, root_digest=model.root_digest,
                                    actor="tester") for i in range(n)])


def _policy(tmp_path: Path) -> TokenPolicy:
    f = tmp_path / "tokens.toml"
    f.write_text(f'protected = ["acme/*"]\n[[tokens]]\nname = "ops"\ntoken = "{TOKEN}"\nread = ["acme/*"]\n'
                 '[[tokens]]\nname = "other"\ntoken = "other-token-123"\nread = ["team/*"]\n')
    return TokenPolicy.load(f)


def test_fleet_table_pages_and_filters(reg, tmp_path):
    add_registered(reg, make_tiny_repo(tmp_path / "a", big=False), "acme/a", smoke=True)
    add_registered(reg, make_tiny_repo(tmp_path / "b", big=False, seed=2), "team/b")
    _many_deployments(reg, "acme/a", 120)
    _many_deployments(reg, "team/b", 5, node_of=lambda i: "<script>alert(1)</script>")
    set_state(reg, "team/b", "quarantined", "outputs <b>differ</b>")
    with serve(reg) as server, httpx.Client(base_url=server.url) as client:
        r = client.get("/ui/")
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
        assert "script-src" not in r.headers["content-security-policy"] and "default-src 'none'" in r.headers[
            "content-security-policy"]
        assert "<script>" not in r.text and "&lt;script&gt;alert(1)&lt;/script&gt;" in r.text
        assert "outputs &lt;b&gt;differ&lt;/b&gt;" in r.text
        assert "125 deployments on 4 nodes" in r.text and "page 1 of 3" in r.text
        assert r.text.count("<tr>") == 51  # a header row and 50 rows
        assert 'href="/ui/?page=2"' in r.text
        last = client.get("/ui/?page=3")
        assert last.text.count("<tr>") == 26 and "page 3 of 3" in last.text and "next" not in last.text
        node = client.get("/ui/", params={"node": "gpu-01", "per": 10})
        assert "page 1 of 4" in node.text and node.text.count("gpu-01</td>") == 10
        assert 'href="/ui/?node=gpu-01&amp;per=10&amp;page=2"' in node.text
        q = client.get("/ui/", params={"state": "quarantined"})
        assert "5 deployments" in q.text and "/models/team/b/0" in q.text and "/models/acme/a/" not in q.text
        m = client.get("/ui/", params={"model": "acme/a", "per": 500})
        assert m.text.count('title="/models/acme/a/') == 120
        assert client.get("/ui/", params={"model": "acme/absent"}).status_code == 200  # an empty table, not 500
        assert client.get("/ui", follow_redirects=False).headers["location"] == "/ui/"
        assert client.head("/ui/").status_code == 200 and client.head("/ui/").content == b""
        assert client.post("/ui/").status_code == 405
        assert client.get("/ui/nope").status_code == 404
        for bad in ("page=x", "page=0", "per=501", "state=bogus", "model=../../etc", "node=a&node=b",
                    "page=99999999999999", "node=%00"):
            r = client.get(f"/ui/?{bad}")
            assert r.status_code == 400 and "<h1>400</h1>" in r.text, bad
        # the mirror's API still answers beside the page
        assert client.get("/api/models/acme/a").status_code == 200
        assert server.app.stats["ui 200"] >= 5


def test_model_page_and_event_log(cli, reg, tmp_path):
    folder = make_tiny_repo(tmp_path / "a", big=False)
    commit = add_registered(reg, folder, "acme/a", smoke=True)
    assert cli("deploy", "acme/a", "--target", tmp_path / "dep", "--layout", "dir", "--node", "gpu-07").exit_code == 0
    assert cli("audit", "--verify", "--node", "gpu-07").exit_code == 0
    with serve(reg) as server, httpx.Client(base_url=server.url) as client:
        r = client.get("/ui/models/acme/a")
        assert r.status_code == 200
        with reg.catalog.reader() as session:
            model = session.scalars(select(Model).where(Model.name == "acme/a")).one()
            digest = model.root_digest
            sha = model.components[0].files[0].blob_sha256
        for text in (commit, digest, sha[:12], "weights", "tokenizer", "vocab.txt", "ab" * 8, "gpu-07",
                     str(tmp_path / "dep"), 'class="st st-deploy"', 'class="st st-add"'):
            assert text in r.text, text
        assert client.get(f"/ui/models/acme/a?rev={commit[:10]}").status_code == 200
        assert client.get("/ui/models/acme/a?rev=ffffffffff").status_code == 404
        assert client.get("/ui/models/acme/absent").status_code == 404
        assert client.get("/ui/models/..%2F..%2Fetc").status_code == 404
        ev = client.get("/ui/events")
        assert ev.status_code == 200 and "gpu-07" in ev.text and 'class="st st-audit"' in ev.text
        only = client.get("/ui/events", params={"kind": "deploy"})
        assert only.text.count('class="st st-deploy"') == 1 and 'class="st st-add"' not in only.text
        paged = client.get("/ui/events", params={"per": 1})
        assert "older ›" in paged.text and "before=" in paged.text
        assert client.get("/ui/events", params={"since": "soon"}).status_code == 400
        assert client.get("/ui/events", params={"kind": "nope"}).status_code == 400
        assert client.get("/ui/events", params={"before": "-1"}).status_code == 400


def test_the_page_respects_the_mirror_tokens(reg, tmp_path):
    add_registered(reg, make_tiny_repo(tmp_path / "a", big=False), "acme/secret")
    add_registered(reg, make_tiny_repo(tmp_path / "b", big=False, seed=2), "public/open")
    _many_deployments(reg, "acme/secret", 2, node_of=lambda i: "secret-node")
    _many_deployments(reg, "public/open", 2, node_of=lambda i: "open-node")
    reg.log_now("deploy", "acme/secret", node="secret-node")
    basic = "Basic " + base64.b64encode(f"ops:{TOKEN}".encode()).decode()
    with serve(reg, _policy(tmp_path)) as server, httpx.Client(base_url=server.url) as client:
        anon = client.get("/ui/")
        assert anon.status_code == 200 and "public/open" in anon.text
        assert "acme/secret" not in anon.text and "secret-node" not in anon.text and "anonymous" in anon.text
        for auth in (f"Bearer {TOKEN}", basic):
            seen = client.get("/ui/", headers={"authorization": auth})
            assert "acme/secret" in seen.text and "signed in as ops" in seen.text
            assert client.get("/ui/models/acme/secret", headers={"authorization": auth}).status_code == 200
            assert "acme/secret" in client.get("/ui/events", headers={"authorization": auth}).text
        denied = client.get("/ui/models/acme/secret")
        assert denied.status_code == 401 and denied.headers["www-authenticate"].startswith("Basic")
        wrong = client.get("/ui/models/acme/secret", headers={"authorization": "Bearer other-token-123"})
        assert wrong.status_code == 404 and "acme/secret" in wrong.text  # it only repeats the URL it was given
        assert client.get("/ui/models/acme/nothing-here").status_code == 401, "missing and hidden look alike"
        assert "acme/secret" not in client.get("/ui/events").text
        assert client.get("/ui/login").status_code == 401
        ok = client.get("/ui/login", headers={"authorization": basic}, follow_redirects=False)
        assert ok.status_code == 200 and "signed in as ops" in ok.text and "acme/secret" in ok.text
        junk = client.get("/ui/", headers={"authorization": "Basic !!!notbase64"})
        assert junk.status_code == 200 and "anonymous" in junk.text


# ---- headless Chromium ------------------------------------------------------------------------------

CHROMIUM = shutil.which("chromium")


def _chromium(*args: str, profile: Path) -> subprocess.CompletedProcess:
    if CHROMIUM is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed (.ci/run installs Debian's chromium)")
        pytest.skip("chromium is not installed (apt-get install -y chromium)")
    return subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                           "--no-first-run", "--disable-background-networking", "--disable-component-update",
                           "--disable-sync", f"--user-data-dir={profile}", *args],
                          capture_output=True, text=True, timeout=120)


def _png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def test_chromium_renders_the_fleet_and_a_model_page(cli, reg, tmp_path):
    add_registered(reg, make_tiny_repo(tmp_path / "a", big=False), "acme/a", smoke=True)
    _many_deployments(reg, "acme/a", 60)
    with serve(reg, _policy(tmp_path)) as server:
        dom = _chromium("--dump-dom", f"{server.url}/ui/", profile=tmp_path / "p1")
        assert dom.returncode == 0, dom.stderr[-2000:]
        assert "<table" in dom.stdout and "acme/a" not in dom.stdout and "no deployments" in dom.stdout
        # a browser signs in through the Basic challenge of /ui/login with the credentials of the URL
        host = server.url.removeprefix("http://")
        dom = _chromium("--dump-dom", f"http://ops:{TOKEN}@{host}/ui/login", profile=tmp_path / "p2")
        assert "signed in as ops" in dom.stdout and dom.stdout.count('title="/models/acme/a/') == 50
        assert "page 1 of 2" in dom.stdout
        shot = tmp_path / "fleet.png"
        out = _chromium("--window-size=1280,900", f"--screenshot={shot}", f"http://ops:{TOKEN}@{host}/ui/login",
                        profile=tmp_path / "p3")
        assert out.returncode == 0 and _png_size(shot) == (1280, 900) and shot.stat().st_size > 20_000
        page = tmp_path / "model.png"
        _chromium("--window-size=1280,1400", f"--screenshot={page}",
                  f"http://ops:{TOKEN}@{host}/ui/models/acme/a", profile=tmp_path / "p4")
        assert _png_size(page) == (1280, 1400) and page.stat().st_size > 20_000


# ---- the query-string parsers, fuzzed -----------------------------------------------------------------

@settings(max_examples=500, deadline=None)
@given(st.text(max_size=120))
def test_fleet_query_parser_takes_anything(text):
    try:
        q = parse_fleet_query(text)
    except BadQuery as exc:
        assert str(exc)
    else:
        assert isinstance(q, FleetQuery) and 1 <= q.page <= 1_000_000 and 1 <= q.per <= 500


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from(["node", "model", "state", "page", "per", "name", "kind", "since", "before", "x"]),
                       st.text(max_size=30), max_size=6))
def test_query_parsers_on_well_formed_strings(params):
    text = httpx.QueryParams(params).__str__()
    for parse in (parse_fleet_query, parse_events_query):
        try:
            parse(text)
        except BadQuery:
            pass
