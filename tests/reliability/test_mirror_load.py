"""64 concurrent clients downloading from a running ``registry serve`` while ``registry add`` (a separate
process) records a new revision of the same model into the same catalog and it is registered (issue 12).

Every download must be complete (its Content-Length), match the digest the catalog records for (commit, path),
and no request may fail: no 500, no reset, no short body. Clients are httpx clients with keep-alive pools, one
per thread, as a fleet of nodes would be."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import threading

import httpx
import pytest

from tests.reliability.mirror_helpers import registry_serve
from tests.reliability.tally import budget
from tests.serve_helpers import REPO_ROOT, add_registered, make_tiny_repo, set_state

REPO = "acme/tiny"
CLIENTS = 64


def _repo(folder, seed):
    make_tiny_repo(folder, big=False, seed=seed)
    (folder / "README.md").write_text(hashlib.sha256(str(seed).encode()).hexdigest() * 40_000)  # 2.5 MB
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in folder.rglob("*") if p.is_file()}


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_64_clients_download_while_a_new_revision_is_added(reg, registry_env, tmp_path, trials):
    old_files = _repo(tmp_path / "v1", 0)
    new_files = _repo(tmp_path / "v2", 1)
    old_commit = add_registered(reg, tmp_path / "v1", REPO)
    t = trials("concurrency: 64 clients during an add")
    rounds_after = budget(1, 5)
    results: list[tuple[str, str, str | None, str]] = []  # (commit, path, sha256 or None, problem)
    lock = threading.Lock()
    done = threading.Event()
    started = threading.Barrier(CLIENTS + 1)

    with registry_serve(registry_env, tmp_path / "serve.log") as srv:
        def client(i: int) -> None:
            mine = []
            with httpx.Client(base_url=srv.url, timeout=120) as http:
                started.wait()
                after = 0
                while after < rounds_after:
                    finished = done.is_set()
                    try:
                        info = http.get(f"/api/models/{REPO}/revision/main")
                        if info.status_code != 200:
                            mine.append(("?", "info", None, f"info {info.status_code}"))
                        commit = info.json().get("sha", "?")
                        for sib in info.json().get("siblings", [])[i % 3::2]:
                            path = sib["rfilename"]
                            with http.stream("GET", f"/{REPO}/resolve/{commit}/{path}") as r:
                                digest = hashlib.sha256()
                                n = 0
                                for chunk in r.iter_bytes():
                                    digest.update(chunk)
                                    n += len(chunk)
                                problem = "" if r.status_code == 200 and n == int(r.headers["content-length"]) \
                                    else f"status {r.status_code}, {n} of {r.headers.get('content-length')} bytes"
                            mine.append((commit, path, digest.hexdigest(), problem))
                    except httpx.HTTPError as exc:
                        mine.append(("?", "?", None, f"{type(exc).__name__}: {exc}"))
                    if finished:
                        after += 1
            with lock:
                results.extend(mine)

        threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(CLIENTS)]
        for th in threads:
            th.start()
        started.wait()
        env = {**os.environ, **registry_env, "PYTHONPATH": str(REPO_ROOT)}
        added = subprocess.run([sys.executable, "-m", "registry", "add", str(tmp_path / "v2"), "--name", REPO,
                                "--json"], env=env, capture_output=True, text=True, timeout=300)
        assert added.returncode == 0, added.stderr
        set_state(reg, REPO, "registered")
        done.set()
        for th in threads:
            th.join(timeout=300)
        log = srv.log()

    import json
    new_commit = json.loads(added.stdout)["commit"]
    expected = {old_commit: old_files, new_commit: new_files}
    for commit, path, digest, problem in results:
        want = expected.get(commit, {}).get(path)
        t.record(f"{commit[:12]} {path}: {problem or 'digest'}", not problem and digest == want)
    seen = {c for c, *_ in results}
    t.record("the new revision was served during the run", new_commit in seen)
    t.record("no traceback or 5xx in the server log", "Traceback" not in log and '" 500' not in log)
    assert all(not th.is_alive() for th in threads)
    assert t.escaped == [], t.escaped[:20]
