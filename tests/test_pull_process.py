"""Pulls in real child processes: kill -9 mid-download then resume, and two pulls of one model at once."""

from __future__ import annotations

import os
import signal
import time

import pytest
from sqlalchemy import select

from registry.catalog.models import Blob, Model
from tests.conftest import write_json, write_safetensors
from tests.pull_helpers import ADAPTER, BASE, catalog_counts, dump, hub, pull_process, run_cli, store_files  # noqa: F401

pytestmark = pytest.mark.hubclient
BIG = "test-org/big-bert"


def _big_repo(hub, tmp_path) -> str:
    folder = tmp_path / "big"
    write_json(folder / "config.json", {"model_type": "bert", "hidden_size": 1024})
    write_safetensors(folder / "model.safetensors", {"w": ("F32", [1024, 2048])})  # 8 MiB
    hub.add_repo(BIG, folder)
    return hub.file(BIG, "model.safetensors").sha256


def test_kill_9_mid_download_records_nothing_and_rerun_resumes(registry_env, reg, hub, tmp_path):
    sha = _big_repo(hub, tmp_path)
    hub.faults.throttle = 2 * 1024 * 1024  # bytes/s: the download takes ~4 s
    partial = reg.store.partial_path(sha)
    proc = pull_process(registry_env, BIG, "--endpoint", hub.url)
    try:
        deadline = time.monotonic() + 60
        while not (partial.exists() and partial.stat().st_size > 1024 * 1024):
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the download never started"
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL
    assert catalog_counts(reg)["models"] == 0 and catalog_counts(reg)["files"] == 0
    assert not reg.store.has(sha)  # no blob under a digest its bytes were not proven to have
    kept = partial.stat().st_size
    assert 0 < kept < hub.file(BIG, "model.safetensors").size

    hub.faults.throttle = None
    n = len(hub.gets("model.safetensors"))
    res = run_cli("pull", BIG, "--endpoint", hub.url, "--json")
    assert res.exit_code == 0, dump(res)
    assert res.json()["resumed_files"] == 1 and res.json()["state"] == "verified"
    assert [r[2] for r in hub.gets("model.safetensors")[n:]] == [f"bytes={kept}-"]
    assert reg.store.has(sha) and not partial.exists()


def test_two_processes_pulling_the_same_model_converge(registry_env, reg, hub):
    hub.faults.throttle = 4 * 1024 * 1024  # slow enough that the two overlap
    procs = [pull_process(registry_env, ADAPTER, "--endpoint", hub.url, "--json") for _ in range(2)]
    outs = [p.communicate(timeout=120) for p in procs]
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, err
    assert catalog_counts(reg)["models"] == 1
    assert catalog_counts(reg)["revisions"] == 2  # the adapter's and the base's
    with reg.catalog.reader() as s:
        blobs = set(s.scalars(select(Blob.sha256)))
        assert s.scalars(select(Model)).one().state == "verified"
    assert sorted(p.name for p in store_files(reg) if len(p.name) == 64) == sorted(blobs)
    assert reg.store.stray_files() == []  # no partial or temp file left behind
    assert {ADAPTER, BASE} <= {r[1].split("/resolve/")[0].lstrip("/") for r in hub.requests if "/resolve/" in r[1]}


def test_two_processes_share_one_download_of_a_blob(registry_env, reg, hub, tmp_path):
    sha = _big_repo(hub, tmp_path)
    hub.faults.throttle = 8 * 1024 * 1024  # ~1 s: the second process reaches the blob while the first holds it
    procs = [pull_process(registry_env, BIG, "--endpoint", hub.url) for _ in range(2)]
    for p in procs:
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
    assert len(hub.gets("/model.safetensors")) == 1  # the other waited on the digest's lock, then reused it
    assert reg.store.has(sha) and reg.store.stray_files() == []
    assert catalog_counts(reg)["models"] == 1 and catalog_counts(reg)["revisions"] == 1
