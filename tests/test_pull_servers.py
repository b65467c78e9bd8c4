"""`registry pull` against what other servers do differently from huggingface.co's simplest answers, each
next to huggingface_hub's own `snapshot_download` on the same server (docs/pull.md has the table).

The rule under test: the commit comes from the revision API and every byte is checked against that commit's
tree (sha256 of LFS files, git sha1 of the others), so headers a server leaves out (X-Repo-Commit, ETag on
GET) or a HEAD it refuses do not matter; only a header that contradicts the resolved commit fails a pull.
"""

from __future__ import annotations

import importlib.util

import pytest

from tests.hfclient import pulled_files, snapshot
from tests.pull_helpers import SHARDED, catalog_counts, dump, hub  # noqa: F401

pytestmark = pytest.mark.hubclient
TOKEN = "hf_s3cret"


def _pull_verified(cli, reg, hub, repo: str, *extra: str) -> dict[str, str]:
    """Pull ``repo`` from ``hub``, check it ends verified with every byte as published; path -> sha256."""
    res = cli("pull", repo, "--endpoint", hub.url, "--json", *extra)
    assert res.exit_code == 0, dump(res)
    out = res.json()
    commit = hub.repos[repo].refs["main"]
    assert out["state"] == "verified" and out["commit"] == commit
    got = pulled_files(reg, repo, commit)
    assert got and got == {p: hub.file(repo, p).sha256 for p in got}  # the upstream's own digests
    assert cli("verify", repo, "--deep").exit_code == 0  # and the store still holds exactly those bytes
    return got


def _agree(pulled: dict[str, str], snap) -> None:
    assert snap.error is None, (snap.error, snap.message)
    assert {p: snap.files[p] for p in pulled} == pulled  # the same bytes for every file we pulled


def test_no_x_repo_commit_on_get_like_olah(cli, reg, hub, tmp_path):
    hub.faults.head_only = {"X-Repo-Commit"}  # Olah: on HEAD only
    pulled = _pull_verified(cli, reg, hub, SHARDED)
    _agree(pulled, snapshot(hub.url, SHARDED, "main", tmp_path / "hf"))


def test_no_x_repo_commit_at_all_pulls_where_snapshot_download_cannot(cli, reg, hub, tmp_path):
    hub.faults.no_repo_commit = True  # a proxy that strips Hub headers (Artifactory: huggingface_hub#1796)
    _pull_verified(cli, reg, hub, SHARDED)
    snap = snapshot(hub.url, SHARDED, "main", tmp_path / "hf")
    assert snap.error is not None and "X-Repo-Commit" in snap.message  # the Hub client needs it on HEAD


def test_no_etag_on_get(cli, reg, hub, tmp_path):
    hub.faults.head_only = {"ETag", "X-Linked-Etag"}
    pulled = _pull_verified(cli, reg, hub, SHARDED)
    _agree(pulled, snapshot(hub.url, SHARDED, "main", tmp_path / "hf"))


def test_head_answered_405_is_never_needed(cli, reg, hub, tmp_path):
    hub.faults.head_status = 405  # a server (or a proxy in front of one) that only knows GET
    _pull_verified(cli, reg, hub, SHARDED)
    assert not [r for r in hub.requests if r[0] == "HEAD"]  # pull reads metadata from the API, bytes by GET
    snap = snapshot(hub.url, SHARDED, "main", tmp_path / "hf")
    assert snap.error is not None and "405" in snap.message  # the Hub client's metadata comes from HEAD


@pytest.mark.parametrize("status", [302, 307])
def test_redirect_to_cdn_on_another_host_keeps_the_token_home(cli, reg, hub, tmp_path, status):
    hub.faults.token = TOKEN
    cdn = hub.start_cdn(status=status)
    try:
        assert cdn.url.split("//")[1].split(":")[0] != hub.url.split("//")[1].split(":")[0]  # another host
        pulled = _pull_verified(cli, reg, hub, SHARDED, "--token", TOKEN)
        lfs = {p for p in pulled if hub.file(SHARDED, p).lfs}
        assert lfs and {r[1].split("?")[0] for r in cdn.gets("")} == {f"/cdn/{pulled[p]}" for p in lfs}
        assert cdn.authorizations and all(a is None for _, a in cdn.authorizations)  # never the token
        assert all(a == f"Bearer {TOKEN}" for _, a in hub.authorizations)  # the endpoint got it every time
        del cdn.requests[:], cdn.authorizations[:]
        _agree(pulled, snapshot(hub.url, SHARDED, "main", tmp_path / "hf", token=TOKEN))
        assert cdn.gets("") and all(a is None for _, a in cdn.authorizations)  # huggingface_hub drops it too
    finally:
        cdn.stop()


def test_wrong_bytes_from_the_cdn_are_refused(cli, reg, hub):
    cdn = hub.start_cdn()
    try:
        cdn.faults.corrupt.add((SHARDED, "model-00001-of-00002.safetensors"))
        res = cli("pull", SHARDED, "--endpoint", hub.url, "--json")
        assert res.exit_code == 5 and res.json()["error"] == "IntegrityError", dump(res)
        assert "model-00001-of-00002.safetensors" in res.stderr
        assert catalog_counts(reg)["models"] == 0
    finally:
        cdn.stop()


def test_redirect_loop_is_an_upstream_error(cli, reg, hub):
    hub.faults.redirect_loop = True
    res = cli("pull", SHARDED, "--endpoint", hub.url, "--json")
    assert res.exit_code == 7 and res.json()["error"] == "UpstreamError", dump(res)
    assert "redirects" in res.stderr and "signature" not in res.stderr.lower()
    assert catalog_counts(reg)["models"] == 0


def test_paginated_tree_with_opaque_cursor(cli, reg, hub, tmp_path):
    from huggingface_hub import HfApi

    hub.page_size = 2  # the sharded repo's tree arrives in 5 pages linked by `Link: <...&cursor=...>; rel="next"`
    pulled = _pull_verified(cli, reg, hub, SHARDED)
    pages = [r for r in hub.gets(f"/api/models/{SHARDED}/tree/{hub.repos[SHARDED].refs['main']}")]
    assert len(pages) >= 4 and all("cursor=" in r[1] for r in pages[1:])
    listed = set(HfApi(endpoint=hub.url).list_repo_files(SHARDED))
    assert listed == set(hub.repos[SHARDED].commits[hub.repos[SHARDED].refs["main"]])
    _agree(pulled, snapshot(hub.url, SHARDED, "main", tmp_path / "hf"))


def test_xet_backed_files_come_over_the_lfs_route_and_are_verified(cli, reg, hub, tmp_path):
    hub.faults.xet = True  # tree entries carry xetHash, /resolve answers X-Xet-* and rel="xet-auth"
    cdn = hub.start_cdn()  # the LFS-compatible route: 302 to a bridge on another host
    try:
        pulled = _pull_verified(cli, reg, hub, SHARDED)
        assert not [r for r in hub.requests if "xet-read-token" in r[1]]  # never the Xet CAS path
        bridged = {r[1].split("?")[0].rsplit("/", 1)[1] for r in cdn.gets("")}
        lfs = [hub.file(SHARDED, p) for p in pulled if hub.file(SHARDED, p).lfs]
        assert lfs and bridged == {f.xet_hash for f in lfs}  # fetched by Xet hash, checked by sha256
        _agree(pulled, snapshot(hub.url, SHARDED, "main", tmp_path / "hf"))  # HF_HUB_DISABLE_XET=1
        # With Xet on (hf_xet installed, as it is by default on x86_64/arm64) the Hub client takes the Xet path,
        # asks the endpoint for a CAS token and stops there: what on-prem mirrors hit (huggingface_hub#4475).
        xet = snapshot(hub.url, SHARDED, "main", tmp_path / "hf-xet", xet=True)
        if importlib.util.find_spec("hf_xet") is not None:
            assert xet.error is not None and "xet-read-token" in xet.message
        else:
            _agree(pulled, xet)
    finally:
        cdn.stop()


def test_xet_backed_file_with_wrong_bytes_is_refused(cli, reg, hub):
    hub.faults.xet = True
    cdn = hub.start_cdn()
    try:
        cdn.faults.corrupt.add((SHARDED, "model-00002-of-00002.safetensors"))
        res = cli("pull", SHARDED, "--endpoint", hub.url, "--json")
        assert res.exit_code == 5 and res.json()["error"] == "IntegrityError", dump(res)
        assert catalog_counts(reg)["models"] == 0
    finally:
        cdn.stop()
