"""Every way a pull must fail, each with its documented exit code, and each leaving nothing recorded."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from tests.conftest import write_json
from tests.pull_helpers import (  # noqa: F401
    ADAPTER, BASE, BGE, SHARDED, catalog_counts, dump, events, hub, make_bert_like, pull_process, store_files,
)

pytestmark = pytest.mark.hubclient
FAST = ("--backoff", "0.01")


def _nothing_recorded(reg) -> None:
    counts = catalog_counts(reg)
    assert counts["models"] == 0 and counts["files"] == 0, counts


def test_repo_not_found(cli, reg, hub):
    res = cli("pull", "test-org/nope", "--endpoint", hub.url, "--json")
    assert res.exit_code == 3 and res.json()["error"] == "RepoNotFound"
    assert "test-org/nope" in res.stderr
    _nothing_recorded(reg)


def test_revision_not_found(cli, reg, hub):
    res = cli("pull", SHARDED, "--revision", "no-such-branch", "--endpoint", hub.url)
    assert res.exit_code == 3 and "no-such-branch" in res.stderr
    _nothing_recorded(reg)


def test_401_and_403_name_hf_token(cli, reg, hub, monkeypatch):
    hub.faults.token = "s3cret"
    res = cli("pull", SHARDED, "--endpoint", hub.url)
    assert res.exit_code == 8 and "HF_TOKEN" in res.stderr and "401" in res.stderr
    res = cli("pull", SHARDED, "--endpoint", hub.url, "--token", "wrong")
    assert res.exit_code == 8 and "HF_TOKEN" in res.stderr and "403" in res.stderr
    _nothing_recorded(reg)
    monkeypatch.setenv("HF_TOKEN", "s3cret")  # the token defaults to HF_TOKEN
    res = cli("pull", SHARDED, "--endpoint", hub.url)
    assert res.exit_code == 0, dump(res)


def test_x_repo_commit_contradicting_the_resolved_commit_fails(cli, reg, hub):
    # A missing X-Repo-Commit is fine (tests/test_pull_servers.py); one naming another commit is not.
    hub.faults.wrong_repo_commit = "0" * 40
    res = cli("pull", SHARDED, "--endpoint", hub.url, "--json")
    assert res.exit_code == 7 and res.json()["error"] == "UpstreamError", dump(res)
    assert "0" * 40 in res.stderr and hub.repos[SHARDED].refs["main"] in res.stderr and "X-Repo-Commit" in res.stderr
    _nothing_recorded(reg)
    assert store_files(reg) == []


def test_endpoint_answering_html_is_not_hub_compatible(cli, reg, hub):
    hub.faults.api_html = True
    res = cli("pull", SHARDED, "--endpoint", hub.url)
    assert res.exit_code == 7 and "not a Hub-compatible endpoint" in res.stderr
    _nothing_recorded(reg)


def test_corrupt_lfs_object_aborts_and_names_file_and_digests(cli, reg, hub):
    f = hub.file(SHARDED, "model-00002-of-00002.safetensors")
    hub.faults.corrupt.add((SHARDED, f.path))
    res = cli("pull", SHARDED, "--endpoint", hub.url, "--json")
    assert res.exit_code == 5, dump(res)
    err = res.json()
    assert err["error"] == "IntegrityError"
    assert f.path in err["message"] and f.sha256 in err["message"]
    assert err["details"]["expected"] == f.sha256 and len(err["details"]["actual"]) == 64
    assert err["details"]["actual"] != f.sha256
    _nothing_recorded(reg)
    assert not reg.store.has(f.sha256) and not reg.store.partial_path(f.sha256).exists()
    assert [e["error"] for e in events(reg, "pull.refused")] == ["IntegrityError"]


def test_corrupt_regular_file_fails_its_git_sha1(cli, reg, hub):
    f = hub.file(SHARDED, "config.json")
    hub.faults.corrupt.add((SHARDED, "config.json"))
    res = cli("pull", SHARDED, "--endpoint", hub.url, "--json")
    assert res.exit_code == 5, dump(res)
    err = res.json()
    assert "config.json" in err["message"] and f.oid in err["message"]
    assert err["details"]["algorithm"] == "git-sha1"
    _nothing_recorded(reg)
    assert store_files(reg) == [] or all(p.name != f.sha256 for p in store_files(reg))


@pytest.mark.parametrize("bad", ["../escape.json", "/etc/passwd", "a/../../b"])
def test_tree_with_unsafe_paths_is_refused(cli, reg, hub, bad):
    hub.faults.extra_tree.append({"type": "file", "path": bad, "oid": "a" * 40, "size": 3})
    res = cli("pull", SHARDED, "--endpoint", hub.url)
    assert res.exit_code == 5 and repr(bad) in res.stderr
    _nothing_recorded(reg)
    assert not [r for r in hub.requests if "/resolve/" in r[1]]  # refused before any download


def test_manifest_requiring_absent_file_names_role_and_file(cli, reg, hub, tmp_path):
    manifest = tmp_path / "m.toml"
    manifest.write_text(f'name = "{SHARDED}"\nfamily = "transformers"\n[[component]]\nrole = "processor"\n'
                        'files = ["preprocessor_config.json"]\n[[component]]\nrole = "config"\nfiles = ["config.json"]\n')
    res = cli("pull", SHARDED, "--endpoint", hub.url, "--manifest", manifest, "--json")
    assert res.exit_code == 4
    assert res.json()["details"]["missing"] == ["processor: preprocessor_config.json"]
    _nothing_recorded(reg)


def test_missing_shard_is_incomplete(cli, reg, hub, tmp_path):
    folder = make_bert_like(tmp_path / "broken", shards=2, seed=11)
    (folder / "model-00002-of-00002.safetensors").unlink()
    hub.add_repo("test-org/missing-shard", folder)
    res = cli("pull", "test-org/missing-shard", "--endpoint", hub.url, "--json")
    assert res.exit_code == 4, dump(res)
    assert res.json()["details"]["missing"] == ["weights: model-00002-of-00002.safetensors"]
    _nothing_recorded(reg)


def test_missing_base_repo_is_incomplete(cli, reg, hub, tmp_path):
    from tests.pull_helpers import make_adapter

    hub.add_repo("test-org/orphan-lora", make_adapter(tmp_path / "orphan", base="test-org/no-such-base"))
    res = cli("pull", "test-org/orphan-lora", "--endpoint", hub.url, "--json")
    assert res.exit_code == 4, dump(res)
    [missing] = res.json()["details"]["missing"]
    assert missing.startswith("base: test-org/no-such-base")
    _nothing_recorded(reg)


def test_dropped_connection_is_retried_with_range(cli, reg, hub):
    f = hub.file(SHARDED, "model-00001-of-00002.safetensors")
    hub.faults.drop_at[(SHARDED, f.path)] = f.size // 2
    hub.faults.drop_times[(SHARDED, f.path)] = 2  # twice, then the upstream recovers
    res = cli("pull", SHARDED, "--endpoint", hub.url, *FAST, "--json")
    assert res.exit_code == 0, dump(res)
    ranges = [r[2] for r in hub.gets(f.path)]
    assert ranges[0] is None and ranges[1:] == [f"bytes={f.size // 2}-"] * 2


def test_dropped_connection_gives_up_then_resumes(cli, reg, hub):
    f = hub.file(SHARDED, "model-00002-of-00002.safetensors")
    cut = f.size // 3
    hub.faults.drop_at[(SHARDED, f.path)] = cut  # never gets past this byte
    res = cli("pull", SHARDED, "--endpoint", hub.url, "--retries", "2", *FAST)
    assert res.exit_code == 7, dump(res)
    assert "run the same command again to resume" in res.stderr and f.path in res.stderr
    _nothing_recorded(reg)
    partial = reg.store.partial_path(f.sha256)
    assert partial.stat().st_size == cut and not reg.store.has(f.sha256)
    hub.faults.drop_at.clear()
    n = len(hub.gets(f.path))
    res = cli("pull", SHARDED, "--endpoint", hub.url, "--json")
    assert res.exit_code == 0, dump(res)
    assert res.json()["resumed_files"] == 1
    assert [r[2] for r in hub.gets(f.path)[n:]] == [f"bytes={cut}-"]
    assert reg.store.has(f.sha256) and not partial.exists()


def test_5xx_is_retried_and_a_persistent_one_fails(cli, reg, hub):
    hub.faults.fail_status[(SHARDED, "config.json")] = [503, 502]
    res = cli("pull", SHARDED, "--endpoint", hub.url, *FAST)
    assert res.exit_code == 0, dump(res)
    assert len(hub.gets("/config.json")) == 3
    hub.faults.fail_status[(BGE, "config.json")] = [500] * 10
    res = cli("pull", BGE, "--endpoint", hub.url, "--retries", "2", *FAST)
    assert res.exit_code == 7 and "HTTP 500" in res.stderr and "config.json" in res.stderr
    assert catalog_counts(reg)["models"] == 1


def test_server_ignoring_range_restarts_the_file(cli, reg, hub):
    f = hub.file(SHARDED, "model-00001-of-00002.safetensors")
    hub.faults.drop_at[(SHARDED, f.path)] = 100
    hub.faults.drop_times[(SHARDED, f.path)] = 1
    hub.faults.ignore_range = True  # answers 200 with the whole file to a Range request
    res = cli("pull", SHARDED, "--endpoint", hub.url, *FAST)
    assert res.exit_code == 0, dump(res)


@pytest.mark.skipif(shutil.which("unshare") is None, reason="needs unshare(1) to mount a small tmpfs")
def test_disk_full_is_a_storage_error(registry_env, reg, hub, tmp_path):
    """A real full disk: the store's blobs/ on a 64 kB tmpfs in a private mount namespace."""
    probe = subprocess.run(["unshare", "-rm", "sh", "-c", "mount -t tmpfs -o size=64k tmpfs /mnt"],
                           capture_output=True)
    if probe.returncode != 0:  # containers often forbid user namespaces; a real full disk needs one
        pytest.skip(f"cannot mount a tmpfs in a user namespace here: {probe.stderr.decode(errors='replace')!r}")
    blobs = reg.store.root
    wrap = ["unshare", "-rm", "sh", "-c", f'mount -t tmpfs -o size=64k tmpfs "{blobs}" && exec "$0" "$@"']
    big = tmp_path / "big"
    write_json(big / "config.json", {"model_type": "bert"})
    (big / "model.safetensors").parent.mkdir(exist_ok=True)
    from tests.conftest import write_safetensors

    write_safetensors(big / "model.safetensors", {"w": ("F32", [256, 256])})  # 256 kB: does not fit
    hub.add_repo("test-org/too-big", big)
    proc = pull_process(registry_env, "test-org/too-big", "--endpoint", hub.url, wrap=wrap)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 10, err
    assert "no space left" in err
    _nothing_recorded(reg)


def test_damaged_partial_from_an_earlier_run_is_replaced(cli, reg, hub):
    f = hub.file(SHARDED, "model-00001-of-00002.safetensors")
    partial = reg.store.partial_path(f.sha256)
    partial.parent.mkdir(parents=True, exist_ok=True)
    partial.write_bytes(b"\0" * (f.size // 2))  # not a prefix of the real bytes
    res = cli("pull", SHARDED, "--endpoint", hub.url, "--json")
    assert res.exit_code == 0, dump(res)
    assert [r[2] for r in hub.gets(f.path)] == [f"bytes={f.size // 2}-", None]  # resume failed: once more from 0
    assert reg.store.has(f.sha256) and not partial.exists()
    assert res.json()["resumed_files"] == 0
