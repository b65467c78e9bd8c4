"""The mirror's HTTP answers, byte for byte, against a real uvicorn server on 127.0.0.1 and a real catalog
(SQLite and Postgres). The real HF clients are driven against it in test_serve_clients.py."""

from __future__ import annotations

import hashlib
import json

import pytest

from registry.hashing import git_blob_sha1, lfs_pointer
from registry.server import TokenPolicy
from registry.server.ranges import parse_range
from registry.server.routing import parse
from registry.services.add import add_folder
from tests.serve_helpers import add_registered, http, make_tiny_repo, serve, set_state

REPO = "acme/tiny"


@pytest.fixture
def served(reg, tmp_path):
    folder = make_tiny_repo(tmp_path / "tiny")
    commit = add_registered(reg, folder, REPO)
    with serve(reg) as server:
        yield server, folder, commit


def _no_xet(reply) -> None:
    assert not any("xet" in k for k in reply.headers), reply.headers
    assert b"xet" not in reply.body.lower()
    assert "link" not in reply.headers


def test_repo_info_siblings_complete_and_blobs(served, reg):
    server, folder, commit = served
    expected = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
    plain = http("GET", f"{server.url}/api/models/{REPO}")
    assert plain.status == 200
    info = plain.json()
    assert info["id"] == REPO and info["sha"] == commit and info["private"] is False
    assert sorted(s["rfilename"] for s in info["siblings"]) == expected
    assert all(set(s) == {"rfilename"} for s in info["siblings"])
    _no_xet(plain)

    rev = http("GET", f"{server.url}/api/models/{REPO}/revision/main?blobs=true&expand=sha&expand=siblings")
    assert rev.status == 200 and rev.json()["sha"] == commit
    sib = {s["rfilename"]: s for s in rev.json()["siblings"]}
    weights = (folder / "model.safetensors").read_bytes()
    assert sib["model.safetensors"]["lfs"] == {"sha256": hashlib.sha256(weights).hexdigest(), "size": len(weights),
                                               "pointerSize": len(lfs_pointer(hashlib.sha256(weights).hexdigest(), len(weights)))}
    assert sib["config.json"]["blobId"] == git_blob_sha1((folder / "config.json").read_bytes())
    assert "lfs" not in sib["config.json"] and sib["config.json"]["size"] == (folder / "config.json").stat().st_size
    by_commit = http("GET", f"{server.url}/api/models/{REPO}/revision/{commit}")
    assert by_commit.status == 200 and by_commit.json()["sha"] == commit
    _no_xet(rev)


def test_tree_recursive_paths_and_encoded_slashes(served):
    server, folder, commit = served
    flat = http("GET", f"{server.url}/api/models/{REPO}/tree/main").json()
    assert {(e["type"], e["path"]) for e in flat} >= {("directory", "1_Pooling"), ("file", "config.json")}
    assert not any(e["path"].startswith("1_Pooling/") for e in flat)
    deep = http("GET", f"{server.url}/api/models/{REPO}/tree/main?recursive=True&expand=false")
    entries = {e["path"]: e for e in deep.json()}
    assert entries["1_Pooling/config.json"]["oid"] == git_blob_sha1((folder / "1_Pooling/config.json").read_bytes())
    assert entries["model.safetensors"]["lfs"]["oid"] == hashlib.sha256((folder / "model.safetensors").read_bytes()).hexdigest()
    assert entries["1_Pooling"]["type"] == "directory"
    _no_xet(deep)
    nested = http("GET", f"{server.url}/api/models/{REPO}/tree/{commit}/1_Pooling%2F")
    assert [e["path"] for e in nested.json()] == ["1_Pooling/config.json"]
    missing = http("GET", f"{server.url}/api/models/{REPO}/tree/main/additional_chat_templates")
    assert missing.status == 404 and missing.headers["x-error-code"] == "EntryNotFound"
    assert missing.headers["x-repo-commit"] == commit


def test_resolve_head_get_and_ranges(served):
    server, folder, commit = served
    data = (folder / "model.safetensors").read_bytes()
    url = f"{server.url}/{REPO}/resolve/main/model.safetensors"
    head = http("HEAD", url)
    assert head.status == 200 and head.body == b""
    sha = hashlib.sha256(data).hexdigest()
    assert head.headers["x-repo-commit"] == commit
    assert head.headers["etag"] == head.headers["x-linked-etag"] == f'"{sha}"'
    assert head.headers["x-linked-size"] == head.headers["content-length"] == str(len(data))
    assert head.headers["accept-ranges"] == "bytes"
    assert "content-encoding" not in head.headers
    _no_xet(head)
    full = http("GET", url, headers={"Accept-Encoding": "gzip"})
    assert full.status == 200 and full.body == data and "content-encoding" not in full.headers
    small = http("HEAD", f"{server.url}/{REPO}/resolve/{commit}/1_Pooling/config.json")
    assert small.headers["etag"] == f'"{git_blob_sha1((folder / "1_Pooling/config.json").read_bytes())}"'
    for spec, start, end in [("bytes=10-19", 10, 19), ("bytes=-5", len(data) - 5, len(data) - 1),
                             (f"bytes={len(data) - 3}-", len(data) - 3, len(data) - 1),
                             ("bytes=0-99999999999", 0, len(data) - 1)]:
        part = http("GET", url, headers={"Range": spec})
        assert part.status == 206, spec
        assert part.body == data[start:end + 1]
        assert part.headers["content-range"] == f"bytes {start}-{end}/{len(data)}"
        assert part.headers["x-linked-size"] == str(len(data))
    past = http("GET", url, headers={"Range": f"bytes={len(data)}-"})
    assert past.status == 416 and past.headers["x-error-code"] == "RangeNotSatisfiable"
    assert past.headers["content-range"] == f"bytes */{len(data)}"
    ignored = http("GET", url, headers={"Range": "bytes=0-1,5-6"})
    assert ignored.status == 200 and len(ignored.body) == len(data)


@pytest.mark.parametrize("loop, zero_copy", [("asyncio", True), ("asyncio", False), ("uvloop", False)])
def test_both_body_paths_send_the_same_bytes(reg, tmp_path, loop, zero_copy):
    folder = make_tiny_repo(tmp_path / "tiny")
    add_registered(reg, folder, REPO)
    data = (folder / "model.safetensors").read_bytes()
    with serve(reg, loop=loop) as server:
        server.app.zero_copy = zero_copy
        server.app.chunk_size = 64 * 1024  # many chunks on the portable path
        url = f"{server.url}/{REPO}/resolve/main/model.safetensors"
        assert http("GET", url).body == data
        part = http("GET", url, headers={"Range": "bytes=1000000-"})
        assert part.status == 206 and part.body == data[1000000:]
        assert http("HEAD", url).body == b""
        assert http("GET", f"{server.url}/{REPO}/resolve/main/config.json").body == (folder / "config.json").read_bytes()
        assert server.app.stats["zero-copy"] == (3 if zero_copy else 0)


def test_many_concurrent_clients_get_whole_files(served):
    from concurrent.futures import ThreadPoolExecutor

    server, folder, _ = served
    data = (folder / "model.safetensors").read_bytes()
    url = f"{server.url}/{REPO}/resolve/main/model.safetensors"
    with ThreadPoolExecutor(max_workers=12) as pool:
        gets = [pool.submit(http, "GET", url) for _ in range(8)]
        heads = [pool.submit(http, "HEAD", url) for _ in range(16)]
        assert all(g.result().body == data for g in gets)
        assert {h.result().headers["x-linked-size"] for h in heads} == {str(len(data))}


def test_error_codes_on_every_4xx(served):
    server, _, commit = served
    cases = [
        ("HEAD", f"/{REPO}/resolve/main/nope.json", 404, "EntryNotFound"),
        ("GET", f"/{REPO}/resolve/{'0' * 40}/config.json", 404, "RevisionNotFound"),
        ("GET", f"/{REPO}/resolve/v9/config.json", 404, "RevisionNotFound"),
        ("GET", "/acme/other/resolve/main/config.json", 404, "RepoNotFound"),
        ("GET", "/api/models/acme/other", 404, "RepoNotFound"),
        ("GET", f"/api/models/{REPO}/revision/nope", 404, "RevisionNotFound"),
        ("GET", f"/api/models/{REPO}/xet-read-token/main", 404, "RepoNotFound"),
        ("GET", "/api/datasets/acme/tiny", 404, "RepoNotFound"),
        ("POST", f"/{REPO}/resolve/main/config.json", 405, "MethodNotAllowed"),
        ("GET", f"/{REPO}/resolve/main/../secret", 404, "EntryNotFound"),
        ("GET", "/nothing-here", 404, "EntryNotFound"),
    ]
    for method, path, status, code in cases:
        r = http(method, server.url + path)
        assert (r.status, r.headers.get("x-error-code")) == (status, code), (method, path, r.status, r.headers)
    entry = http("HEAD", f"{server.url}/{REPO}/resolve/main/nope.json")
    assert entry.headers["x-repo-commit"] == commit
    assert http("GET", f"{server.url}/api/agent-harnesses").json() == {"standardEnvVars": [], "harnesses": {}}


def test_refs_tags_and_paths_info(served, reg, tmp_path):
    server, folder, commit = served
    add_folder(reg, folder, REPO, revision="v1.0")  # same bytes, same commit: one more ref name
    set_state(reg, REPO, "registered")  # re-adding records the model as verified again
    refs = http("GET", f"{server.url}/api/models/{REPO}/refs?include_prs=1").json()
    assert {b["name"]: b["targetCommit"] for b in refs["branches"]} == {"main": commit, "v1.0": commit}
    assert refs["pullRequests"] == [] and refs["tags"] == []
    assert http("HEAD", f"{server.url}/{REPO}/resolve/v1.0/config.json").headers["x-repo-commit"] == commit
    info = http("POST", f"{server.url}/api/models/{REPO}/paths-info/main",
                headers={"Content-Type": "application/x-www-form-urlencoded"},
                body=b"paths=config.json&paths=1_Pooling&paths=absent.txt&expand=true")
    assert info.status == 200
    got = {e["path"]: e["type"] for e in info.json()}
    assert got == {"config.json": "file", "1_Pooling": "directory"}
    bad = http("GET", f"{server.url}/api/models/{REPO}/paths-info/main")
    assert bad.status == 405 and bad.headers["x-error-code"] == "MethodNotAllowed"


def test_only_registered_revisions_are_served(reg, tmp_path):
    add_folder(reg, make_tiny_repo(tmp_path / "v", big=False, seed=1), "acme/verified-only")
    commit = add_registered(reg, make_tiny_repo(tmp_path / "q", big=False, seed=2), "acme/soon-quarantined")
    with serve(reg) as server:
        r = http("GET", f"{server.url}/api/models/acme/verified-only")
        assert (r.status, r.headers["x-error-code"]) == (404, "RepoNotFound")
        assert http("HEAD", f"{server.url}/acme/verified-only/resolve/main/config.json").status == 404
        assert http("GET", f"{server.url}/api/models/acme/soon-quarantined").json()["sha"] == commit
        set_state(reg, "acme/soon-quarantined", "quarantined", "smoke outputs differ between runs")
        # No cache hides a quarantine: the very next request is refused.
        for path in ("/api/models/acme/soon-quarantined", "/acme/soon-quarantined/resolve/main/config.json",
                     f"/acme/soon-quarantined/resolve/{commit}/config.json"):
            r = http("GET", server.url + path)
            assert (r.status, r.headers["x-error-code"]) == (404, "RepoNotFound"), path


def test_tokens_protect_repos_without_leaking(reg, tmp_path):
    add_registered(reg, make_tiny_repo(tmp_path / "s", big=False), "secret/model")
    add_registered(reg, make_tiny_repo(tmp_path / "p", big=False, seed=3), "public/model")
    token_file = tmp_path / "tokens.toml"
    token_file.write_text(f'''protected = ["secret/*"]
[[tokens]]
name = "nodes"
sha256 = "{hashlib.sha256(b"hf_good_token").hexdigest()}"
read = ["secret/*"]
[[tokens]]
name = "other"
token = "hf_other_token"
read = ["elsewhere/*"]
''')
    policy = TokenPolicy.load(token_file)
    with serve(reg, policy) as server:
        anon_existing = http("GET", f"{server.url}/api/models/secret/model")
        anon_missing = http("GET", f"{server.url}/api/models/secret/absent")
        assert anon_existing.status == anon_missing.status == 401
        assert anon_existing.body == anon_missing.body and b"secret" not in anon_existing.body
        assert anon_existing.headers["x-error-code"] == anon_missing.headers["x-error-code"] == "RepoNotFound"
        assert http("HEAD", f"{server.url}/secret/model/resolve/main/config.json").status == 401
        bad = {"Authorization": "Bearer hf_wrong_token"}
        assert http("HEAD", f"{server.url}/secret/model/resolve/main/config.json", headers=bad).status == 401
        good = {"Authorization": "Bearer hf_good_token"}
        assert http("HEAD", f"{server.url}/secret/model/resolve/main/config.json", headers=good).status == 200
        assert http("GET", f"{server.url}/api/models/secret/model", headers=good).status == 200
        other = {"Authorization": "Bearer hf_other_token"}
        denied, absent = (http("GET", f"{server.url}/api/models/secret/{n}", headers=other) for n in ("model", "absent"))
        assert denied.status == absent.status == 404 and denied.headers["x-error-code"] == "RepoNotFound"
        assert http("GET", f"{server.url}/api/models/public/model").status == 200


@pytest.mark.parametrize("text, message", [
    ("protected = 3", "'protected' must be a list"),
    ("[[tokens]]\nname = 'x'\nread = ['a/*']", "exactly one of 'sha256'"),
    ("[[tokens]]\nsha256 = 'abc'\nread = ['a/*']", "64 lowercase hex"),
    ("[[tokens]]\ntoken = 'hf_long_enough'\nread = []", "non-empty list"),
    ("[[tokens]]\ntoken = 'short'\nread = ['a/*']", "at least 8"),
    ("tokens = [", "not valid TOML"),
    ("mystery = 1", "unknown keys"),
])
def test_token_file_bad_inputs(tmp_path, text, message):
    from registry.errors import UsageError

    path = tmp_path / "t.toml"
    path.write_text(text)
    with pytest.raises(UsageError, match=message):
        TokenPolicy.load(path)
    with pytest.raises(UsageError, match="no such file"):
        TokenPolicy.load(tmp_path / "absent.toml")


def test_raw_path_routing_and_ranges():
    assert parse(b"/api/models/org/name/tree/refs%2Fpr%2F1/a%2Fb%2Fc.json").__dict__ == {
        "kind": "tree", "repo_id": "org/name", "revision": "refs/pr/1", "path": "a/b/c.json"}
    assert parse(b"/org/name/resolve/refs%2Fpr%2F1/sub/dir/f.bin").revision == "refs/pr/1"
    assert parse(b"/org/name/resolve/refs%2Fpr%2F1/sub/dir/f.bin").path == "sub/dir/f.bin"
    assert parse(b"/gpt2/resolve/main/config.json").repo_id == "gpt2"
    assert parse(b"/api/models/gpt2/revision/main").__dict__ == {"kind": "info", "repo_id": "gpt2", "revision": "main",
                                                                 "path": ""}
    assert parse(b"/api/models/org/name").kind == "info"
    assert parse(b"/api/models/org/name/paths-info/main").kind == "paths-info"
    assert parse(b"/api/models/org/name/refs").kind == "refs"
    assert parse(b"/api/models/org/name/xet-read-token/main").kind == "unknown"
    assert parse_range("bytes=0-0", 10).__dict__ == {"start": 0, "length": 1, "unsatisfiable": False}
    assert parse_range("bytes=5-2", 10) is None and parse_range("items=0-1", 10) is None
    assert parse_range("bytes=-0", 10).unsatisfiable and parse_range("bytes=0-", 0).unsatisfiable


def test_serve_command_runs_and_refuses_bad_token_file(reg, tmp_path, registry_env, cli):
    import os
    import socket
    import subprocess
    import sys
    import time

    add_registered(reg, make_tiny_repo(tmp_path / "m", big=False), REPO)
    bad = tmp_path / "bad.toml"
    bad.write_text("protected = [")
    r = cli("serve", "--token-file", bad)
    assert r.exit_code == 2 and "not valid TOML" in r.stderr
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "registry", "serve", "--port", str(port)],
                            env={**os.environ, **registry_env}, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        for _ in range(300):  # bounded wait for the port to open
            try:
                reply = http("GET", f"http://127.0.0.1:{port}/api/models/{REPO}")
                break
            except OSError:
                assert proc.poll() is None, proc.stderr.read().decode()
                time.sleep(0.1)
        assert reply.status == 200 and reply.json()["id"] == REPO
        assert json.loads(http("GET", f"http://127.0.0.1:{port}/api/agent-harnesses").body)["harnesses"] == {}
    finally:
        proc.terminate()
        proc.wait(timeout=30)
