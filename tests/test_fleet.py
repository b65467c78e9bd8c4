"""A fleet on one catalog: several registry homes (one per simulated node) on the real Postgres server, each a
separate `registry` process, sharing one blob store (a shared filesystem mount, here a symlinked folder). Two nodes
audit at the same time; one node's disk was changed by hand; any host sees the whole fleet."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import PG_AVAILABLE, postgres_database
from tests.serve_helpers import make_tiny_repo

pytestmark = pytest.mark.postgres


def _env(tmp_path: Path, url: str, node: str) -> dict[str, str]:
    home = tmp_path / f"home-{node}"
    home.mkdir(exist_ok=True)
    if not (home / "blobs").exists():
        (home / "blobs").symlink_to(tmp_path / "shared-blobs", target_is_directory=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REGISTRY_", "HF_"))}
    env.update({"REGISTRY_HOME": str(home), "REGISTRY_DATABASE_URL": url, "REGISTRY_NODE": node,
                "REGISTRY_ACTOR": f"ops-{node}", "REGISTRY_SMOKE": "0", "HF_HUB_DISABLE_TELEMETRY": "1"})
    return env


def _run(env: dict[str, str], *args: object) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "registry", *map(str, args)], env=env, capture_output=True,
                          text=True, timeout=300)


def _start(env: dict[str, str], *args: object) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "registry", *map(str, args)], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def test_a_fleet_of_nodes_on_one_postgres_catalog(tmp_path):
    if not PG_AVAILABLE:
        if os.environ.get("CI"):
            pytest.fail("PostgreSQL is not reachable on 127.0.0.1:5432 (CI must test it)")
        pytest.skip("PostgreSQL is not reachable on 127.0.0.1:5432")
    (tmp_path / "shared-blobs").mkdir()
    with postgres_database() as url:
        url = url.replace("postgresql+psycopg://", "postgresql://")
        ingest = _env(tmp_path, url, "ingest")
        folder = make_tiny_repo(tmp_path / "m", big=False)
        r = _run(ingest, "add", folder, "--name", "acme/tiny", "--json")
        assert r.returncode == 0, r.stderr
        # registration (the smoke inference) is tested elsewhere; here the model only has to be registered
        from sqlalchemy import create_engine, text

        eng = create_engine(url.replace("postgresql://", "postgresql+psycopg://"))
        with eng.begin() as conn:
            conn.execute(text("UPDATE models SET state = 'registered'"))
        eng.dispose()

        nodes = ["gpu-01", "gpu-02", "gpu-03"]
        envs = {n: _env(tmp_path, url, n) for n in nodes}
        targets = {n: tmp_path / f"disk-{n}" / "models" / "tiny" for n in nodes}
        for n in nodes:
            r = _run(envs[n], "deploy", "acme/tiny", "--target", targets[n], "--layout", "dir")
            assert r.returncode == 0, r.stderr

        # gpu-02's disk, changed by hand
        (targets["gpu-02"] / "vocab.txt").unlink()
        (targets["gpu-02"] / "vocab.txt").write_text("patched on the node\n")
        (targets["gpu-02"] / "config.json").unlink()
        (targets["gpu-02"] / "debug.log").write_text("x")

        # two nodes verify at the same time, twice over
        for _ in range(2):
            procs = {n: _start(envs[n], "audit", "--verify", "--json") for n in ("gpu-01", "gpu-02")}
            results = {n: (p.wait(timeout=300), *p.communicate()) for n, p in procs.items()}
            assert results["gpu-01"][0] == 0, results["gpu-01"][2]
            assert results["gpu-02"][0] == 1, results["gpu-02"][2]
            assert [d["node"] for d in json.loads(results["gpu-01"][1])["deployments"]] == ["gpu-01"]

        # any host (here gpu-03, which verified nothing) sees the whole fleet, with when and by whom
        r = _run(envs["gpu-03"], "audit", "--json")
        assert r.returncode == 1
        rows = {d["node"]: d for d in json.loads(r.stdout)["deployments"]}
        assert set(rows) == set(nodes)
        assert rows["gpu-01"]["state"] == "ok" and rows["gpu-01"]["verified_by"] == "ops-gpu-01"
        assert rows["gpu-01"]["verified_host"] == "gpu-01"
        drifted = rows["gpu-02"]
        assert drifted["state"] == "drifted" and drifted["verified_by"] == "ops-gpu-02"
        assert drifted["drift"]["missing"] == ["config.json"] and drifted["drift"]["extra"] == ["debug.log"]
        assert [c.split(" (")[0] for c in drifted["drift"]["changed"]] == ["vocab.txt"]
        assert rows["gpu-03"]["state"] == "ok" and rows["gpu-03"]["verified_at"] is None

        h = _run(envs["gpu-03"], "history", "--kind", "audit", "--json")
        audits = json.loads(h.stdout)["events"]
        assert sorted({(e["host"], e["actor"]) for e in audits}) == [("gpu-01", "ops-gpu-01"), ("gpu-02", "ops-gpu-02")]
        assert len(audits) == 4

        # the node repairs by hand, verifies again, and the fleet view follows
        (targets["gpu-02"] / "debug.log").unlink()
        for name in ("vocab.txt", "config.json"):
            (targets["gpu-02"] / name).unlink(missing_ok=True)
            (targets["gpu-02"] / name).write_bytes((folder / name).read_bytes())
        assert _run(envs["gpu-02"], "audit", "--verify").returncode == 0
        assert _run(envs["gpu-03"], "audit").returncode == 0
