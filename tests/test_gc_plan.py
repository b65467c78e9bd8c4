"""``registry gc`` plans, then executes: it never removes what a running pull writes (a real pull in another process
from hubsim), what a live lease claims, or what became referenced after the plan; a dead process's lease is garbage."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

from registry.services.gc import execute_gc, plan_gc
from tests.conftest import make_bert_like, write_json, write_safetensors
from tests.pull_helpers import catalog_counts, hub, pull_process, run_cli  # noqa: F401

BIG = "test-org/big-bert"


def _orphan(reg, tmp_path, content: bytes = b"orphan bytes") -> str:
    src = tmp_path / f"orphan-{len(content)}.bin"
    src.write_bytes(content)
    sha = reg.store.ingest_file(src).digests.sha256
    _age(reg.store.path_for(sha))
    return sha


def _age(path, seconds: float = 7200) -> None:
    old = time.time() - seconds
    os.utime(path, (old, old))


def test_gc_keeps_what_a_running_pull_writes(registry_env, reg, hub, tmp_path):
    folder = tmp_path / "big"
    write_json(folder / "config.json", {"model_type": "bert", "hidden_size": 1024})
    write_safetensors(folder / "model.safetensors", {"w": ("F32", [1024, 2048])})  # 8 MiB
    hub.add_repo(BIG, folder)
    big = hub.file(BIG, "model.safetensors").sha256
    hub.faults.throttle = 2 * 1024 * 1024  # ~4 s for the weights; config.json is stored at once
    proc = pull_process(registry_env, BIG, "--endpoint", hub.url, "--json")
    partial = reg.store.partial_path(big)
    try:
        deadline = time.monotonic() + 60
        while not (partial.exists() and partial.stat().st_size > 1024 * 1024 and list(reg.store.iter_blobs())):
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the pull never got going"
            time.sleep(0.05)
        stored = [sha for sha, _ in reg.store.iter_blobs()]
        assert catalog_counts(reg)["files"] == 0, "nothing recorded yet: only the lease protects these"
        for sha in stored:
            _age(reg.store.path_for(sha))
        _age(partial)
        result = run_cli("gc", "--grace", "0", "--json").json()
        assert result["blobs_removed"] == [] and result["stray_removed"] == []
        kept = {(k["kind"], k["sha256"]): k["reason"] for k in result["plan"]["kept"]}
        assert all(kept[("blob", sha)].startswith(f"leased by pull {BIG}") for sha in stored)
        assert kept[("partial", big)] == "being written"
        assert any(lease.startswith(f"pull {BIG}") for lease in result["plan"]["live_leases"])
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert reg.store.has(big) and all(reg.store.has(sha) for sha in stored)
    assert run_cli("verify").exit_code == 0
    assert reg.store.leases() == [], "the pull released its lease"


LEASE_HOLDER = """
import sys, time
from pathlib import Path
from registry.store.blobs import BlobStore
store = BlobStore(Path(sys.argv[1]))
with store.lease("import bundle.tar"):
    store.claim(sys.argv[2])
    print("held", flush=True)
    time.sleep(600)
"""


def test_a_live_lease_protects_and_a_dead_one_is_garbage(registry_env, reg, tmp_path):
    sha = _orphan(reg, tmp_path)
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(LEASE_HOLDER), str(reg.store.root), sha],
                              stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": os.getcwd()})
    try:
        assert holder.stdout.readline().strip() == "held"
        result = run_cli("gc", "--grace", "0", "--json").json()
        assert result["blobs_removed"] == [] and result["kept_leased"] == 1 and reg.store.has(sha)
        os.kill(holder.pid, signal.SIGKILL)  # dies without releasing: its lease file stays, unlocked
        holder.wait(timeout=30)
    finally:
        if holder.poll() is None:
            holder.kill()
    leases = reg.store.leases()
    assert len(leases) == 1 and not leases[0].live and leases[0].purpose == "import bundle.tar"
    result = run_cli("gc", "--grace", "0", "--json").json()
    assert result["blobs_removed"] == [sha] and not reg.store.has(sha)
    assert [a["kind"] for a in result["plan"]["actions"]] == ["blob", "stale-lease"]
    assert reg.store.leases() == []


def test_dry_run_prints_the_plan_that_then_runs(registry_env, reg, tmp_path):
    assert run_cli("add", make_bert_like(tmp_path / "m"), "--name", "acme/tiny").exit_code == 0
    sha = _orphan(reg, tmp_path)
    w = reg.store.writer(expected_sha256="a" * 64, expected_size=10, resume=False)
    w.write(b"12345")
    w.abort(keep_partial=True)
    _age(reg.store.partial_path("a" * 64))
    text = run_cli("gc", "--grace", "0", "--dry-run")
    assert text.exit_code == 0 and "remove blob" in text.stdout and "remove partial" in text.stdout
    assert "nothing was removed (--dry-run)" in text.stdout and reg.store.has(sha)
    plan = run_cli("gc", "--grace", "0", "--dry-run", "--json").json()
    planned = [(a["kind"], a["sha256"]) for a in plan["plan"]["actions"]]
    assert planned == [("blob", sha), ("partial", "a" * 64)]
    done = run_cli("gc", "--grace", "0", "--json").json()
    assert [(a["kind"], a["sha256"]) for a in done["plan"]["actions"]] == planned
    assert done["blobs_removed"] == [sha] and done["stray_removed"] == [str(reg.store.partial_path("a" * 64))]
    assert run_cli("verify").exit_code == 0


def test_execution_rechecks_what_the_plan_said(registry_env, reg, tmp_path):
    content = b"these bytes get a model between the plan and its execution\n"
    sha = _orphan(reg, tmp_path, content)
    plan = plan_gc(reg, grace_seconds=0)
    assert [a.sha256 for a in plan.actions if a.kind == "blob"] == [sha]
    folder = make_bert_like(tmp_path / "m")
    (folder / "vocab.txt").write_bytes(content)
    assert run_cli("add", folder, "--name", "acme/late").exit_code == 0
    result = execute_gc(reg, plan)
    assert result.skipped == (sha,) and result.blobs_removed == () and reg.store.has(sha)
