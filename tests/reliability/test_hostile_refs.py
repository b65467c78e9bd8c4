"""Ref and revision names end to end (issue 12, "Security"): a ref like ``../../../../x`` once imported from a
bundle or given to ``add --revision`` was advertised by ``registry serve`` and made ``hf_hub_download`` write
a refs file above its cache root. Now no such name is recorded (tests/reliability/test_hostile_folders.py and
test_hostile_bundles.py), and a catalog that holds one from before (inserted here directly) neither advertises
it in /refs nor resolves it: the real huggingface_hub client gets a RevisionNotFound and writes nothing
outside its cache."""

from __future__ import annotations

import json
import os
from pathlib import Path
from urllib.parse import quote

from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from registry.catalog.models import Ref, Repo, Revision
from registry.paths import check_ref_name
from tests.reliability.tally import budget
from tests.serve_helpers import add_registered, client_env, http, make_tiny_repo, run_client, serve

BAD = ["../../../../x", "../../x", "refs/../../../x", "-x", "a..b", "x.lock", "..", "a/./b", "a b"]

CLIENT = r"""
import json, sys
from huggingface_hub import hf_hub_download
out = {}
for rev in json.loads(sys.argv[1]):
    try:
        hf_hub_download("acme/m", "config.json", revision=rev)
        out[rev] = "ok"
    except Exception as exc:
        out[rev] = type(exc).__name__
print(json.dumps(out))
"""


def test_bad_refs_are_neither_advertised_nor_resolved(reg, tmp_path, trials):
    t = trials("hostile: ref")
    add_registered(reg, make_tiny_repo(tmp_path / "m", big=False), "acme/m")
    with reg.catalog.session() as session:  # a catalog written before ref names were checked
        repo = session.scalars(select(Repo).where(Repo.repo_id == "acme/m")).one()
        rev = session.scalars(select(Revision).where(Revision.repo_id == repo.id)).one()
        for name in BAD:
            session.add(Ref(repo_id=repo.id, name=name, revision_id=rev.id))
    client = tmp_path / "client"
    cache = client / "a" / "b" / "hub"
    with serve(reg) as srv:
        refs = http("GET", f"{srv.url}/api/models/acme/m/refs").json()
        advertised = {b["name"] for b in refs["branches"]} | {x["name"] for x in refs.get("tags", [])}
        assert "main" in advertised
        for name in BAD:
            t.record(f"/refs advertises {name!r}", name not in advertised)
            r = http("GET", f"{srv.url}/api/models/acme/m/revision/{quote(name, safe='')}")
            t.record(f"revision API resolves {name!r}", r.status == 404)
        got = run_client(CLIENT, client_env(srv.url, cache, HF_HOME=str(tmp_path / "hf-home")),
                         json.dumps(["main", *BAD]))
    assert got["main"] == "ok"  # the client works: the refusals below are about the names
    for name in BAD:
        t.record(f"hf_hub_download(revision={name!r})", got[name] != "ok")
    outside = sorted(str(p) for p in client.rglob("*") if p.is_file() and not p.is_relative_to(cache))
    t.record("no file outside the client's cache", outside == [])
    assert outside == [], outside
    assert t.escaped == [], t.escaped


@settings(max_examples=budget(100, 3000), deadline=None)
@given(st.text(alphabet=st.sampled_from(list("ab./-_@{}~^:?*[\\ \t\x00\x7f") + ["é", "\u2028"]), max_size=40))
def test_any_accepted_ref_name_stays_inside_a_refs_folder(name):
    """Whatever a ref check accepts, joined under a cache's refs/ folder (as huggingface_hub does), stays inside
    it and is one plain relative path; whatever it refuses gets a ValueError with a reason, never another error."""
    try:
        check_ref_name(name)
    except ValueError as exc:
        assert str(exc)
        return
    root = Path("/cache/refs")
    joined = Path(os.path.normpath(root / name))
    assert joined.is_relative_to(root) and joined != root
    assert not any(part in ("", ".", "..") for part in name.split("/"))
