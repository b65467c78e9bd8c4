"""``registry push`` and ``registry pull oci://`` killed with kill -9 mid-transfer, then run again: the push
leaves no tag on a partial artifact and the rerun sends only what is missing; the pull records nothing and
the rerun resumes its partial layer with a Range request."""

from __future__ import annotations

import os
import signal
import time

import httpx

from registry.services.listing import show_model
from registry.services.oci_pull import pull_oci
from registry.services.oci_push import push_model
from registry.services.verify import verify
from tests.conftest import write_json, write_safetensors
from tests.oci_helpers import proxy, registry_process, skopeo
from tests.pull_helpers import catalog_counts, events
from tests.serve_helpers import add_registered
from tests.test_oci import oci  # noqa: F401  (fixtures)

BIG = 24 * 1024 * 1024


def _big_model(reg, tmp_path) -> str:
    folder = tmp_path / "big"
    write_json(folder / "config.json", {"model_type": "bert", "hidden_size": 1024})
    write_safetensors(folder / "model.safetensors", {"w": ("F32", [1024, BIG // 4096])})
    (folder / "README.md").write_text("big\n")
    add_registered(reg, folder, "acme/big")
    return "acme/big"


def _kill_when(proc, ready, what: str) -> None:
    try:
        deadline = time.monotonic() + 60
        while not ready():
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, f"{what} never started"
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL


def test_push_killed_mid_upload_then_rerun(registry_env, reg, oci, target, tmp_path):
    name = _big_model(reg, tmp_path)
    with proxy(oci) as p:
        p.faults.throttle = 6 * 1024 * 1024  # bytes/s: the weights take ~4 s
        proc = registry_process(registry_env, "push", name, oci.ref("models/big", host=p.host), "--insecure")
        _kill_when(proc, lambda: p.faults.forwarded > 4 * 1024 * 1024, "the upload")
    assert httpx.head(f"{oci.url}/v2/models/big/manifests/v1").status_code == 404  # no tag on a partial artifact
    assert events(reg, "oci.push") == []

    again = push_model(reg, name, oci.ref("models/big"), insecure=True)
    assert again.present_blobs >= 1 and again.uploaded_blobs < again.blobs  # finished blobs are not sent twice
    assert skopeo("inspect", "--raw", "--tls-verify=false", f"docker://{oci.host}/models/big:v1").returncode == 0
    pulled = pull_oci(target, oci.ref("models/big"), insecure=True)
    assert pulled.digest == again.digest and verify(target, deep=True).ok


def test_pull_killed_mid_layer_records_nothing_and_rerun_resumes(reg, oci, target, tmp_path):
    name = _big_model(reg, tmp_path)
    push_model(reg, name, oci.ref("models/big"), insecure=True)
    weights = next(f.sha256 for c in show_model(reg, name).components for f in c.files if f.path == "model.safetensors")
    partial = target.store.partial_path(weights)
    env = {"REGISTRY_HOME": str(target.settings.home), "REGISTRY_DATABASE_URL": target.settings.database_url,
           "REGISTRY_SMOKE": "0"}
    with proxy(oci) as p:
        p.faults.throttle = 6 * 1024 * 1024
        proc = registry_process(env, "pull", oci.ref("models/big", host=p.host), "--insecure")
        _kill_when(proc, lambda: partial.exists() and partial.stat().st_size > 2 * 1024 * 1024, "the download")
    assert catalog_counts(target) == {"models": 0, "revisions": 0, "blobs": 0, "files": 0}
    assert not target.store.has(weights)
    kept = partial.stat().st_size
    assert 0 < kept < BIG

    result = pull_oci(target, oci.ref("models/big"), insecure=True)
    assert result.resumed_files == 1 and result.state == "verified"
    assert result.downloaded_bytes <= BIG - kept + 64 * 1024  # the rest of the weights and the small files
    assert target.store.has(weights) and not partial.exists()
