"""`registry pull` against hubsim (a real HTTP server on 127.0.0.1 speaking the Hub's protocol), with the
real huggingface_hub client, on a real SQLite file and a real Postgres database."""

from __future__ import annotations

import dataclasses
import socket

import pytest
from sqlalchemy import select

from registry.catalog.models import Lineage, Model, Ref, Revision
from registry.hashing import hash_file
from tests.conftest import make_bert_like, write_json
from tests.pull_helpers import (
    ADAPTER, BASE, BGE, SHARDED, catalog_counts, dump, events, hub, make_adapter, make_base, store_files,  # noqa: F401
)

pytestmark = pytest.mark.hubclient


def _pulled_paths(hub, repo: str) -> set[str]:
    return {r[1].split("/resolve/", 1)[1].split("/", 1)[1] for r in hub.requests
            if r[0] == "GET" and r[1].startswith(f"/{repo}/resolve/")}


def test_adapter_pull_brings_its_base_and_records_verified(cli, reg, hub, monkeypatch):
    monkeypatch.setenv("HF_ENDPOINT", hub.url)  # the default endpoint comes from HF_ENDPOINT
    res = cli("pull", ADAPTER, "--json")
    assert res.exit_code == 0, dump(res)
    out = res.json()
    assert out["state"] == "verified" and out["family"] == "peft" and out["inferred"]
    assert out["commit"] == hub.repos[ADAPTER].refs["main"] and out["revision"] == "main"
    roles = {(c["role"], c["repo"]): c for c in out["components"]}
    assert set(roles) == {("adapter", ADAPTER), ("base", BASE), ("tokenizer", ADAPTER)}
    assert roles[("base", BASE)]["commit"] == hub.repos[BASE].refs["main"]
    assert roles[("base", BASE)]["pinned"] is False  # base from adapter_config.json: recorded as unpinned
    # exactly the files the manifest needs: no training leftovers, no base README
    assert _pulled_paths(hub, ADAPTER) == {"adapter_config.json", "adapter_model.safetensors", "vocab.txt",
                                           "tokenizer_config.json"}
    assert _pulled_paths(hub, BASE) == {"config.json", "model.safetensors"}
    # every blob in the store has the bytes the upstream published
    for repo, path in [(ADAPTER, "adapter_model.safetensors"), (BASE, "model.safetensors"), (BASE, "config.json")]:
        f = hub.file(repo, path)
        assert hash_file(reg.store.path_for(f.sha256)).sha256 == f.sha256
    with reg.catalog.reader() as s:
        model = s.scalars(select(Model).where(Model.name == ADAPTER)).one()
        assert model.state == "verified" and model.root_digest == out["root_digest"]
        lineage = s.scalars(select(Lineage).where(Lineage.model_id == model.id)).all()
        assert [(l.relation, l.parent_revision.repo.repo_id, l.pinned) for l in lineage] == [("base", BASE, False)]
        refs = {(r.repo.repo_id, r.name): r.revision.commit_sha for r in s.scalars(select(Ref))}
        assert refs[(ADAPTER, "main")] == out["commit"] and refs[(BASE, "main")] == hub.repos[BASE].refs["main"]
    [ev] = events(reg, "pull")
    assert ev["subject"] == ADAPTER and ev["commit"] == out["commit"] and ev["endpoint"] == hub.url


def test_sharded_pull_takes_index_and_shards_not_onnx_or_bin(cli, reg, hub):
    res = cli("pull", SHARDED, "--endpoint", hub.url, "--json")
    assert res.exit_code == 0, dump(res)
    assert _pulled_paths(hub, SHARDED) == {
        "model.safetensors.index.json", "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors",
        "config.json", "tokenizer_config.json", "vocab.txt"}
    assert res.json()["files"] == 6


def test_bge_m3_pull_includes_both_heads(cli, reg, hub):
    res = cli("pull", BGE, "--endpoint", hub.url, "--json")
    assert res.exit_code == 0, dump(res)
    out = res.json()
    assert out["family"] == "bge-m3"
    heads = [c for c in out["components"] if c["role"] == "head"]
    assert heads and heads[0]["files"] == 2
    assert out["pickles"] == ["colbert_linear.pt", "sparse_linear.pt"]
    assert not {"onnx/model.onnx", "pytorch_model.bin"} & _pulled_paths(hub, BGE)


def test_blob_in_store_is_never_downloaded_again_whichever_repo(cli, reg, hub, tmp_path):
    assert cli("pull", ADAPTER, "--endpoint", hub.url).exit_code == 0
    # a second repo whose weights are byte-identical to the base's
    twin = make_base(tmp_path / "twin")
    hub.add_repo("test-org/bert-twin", twin)
    before = len(hub.requests)
    res = cli("pull", "test-org/bert-twin", "--endpoint", hub.url, "--json")
    assert res.exit_code == 0, dump(res)
    new = [r for r in hub.requests[before:] if "/resolve/" in r[1]]
    assert not any(r[1].endswith("model.safetensors") or r[1].endswith("config.json") for r in new)
    assert res.json()["reused_files"] >= 2
    # pulling the same model again downloads nothing and converges on the same rows
    counts = catalog_counts(reg)
    before = len(hub.requests)
    again = cli("pull", ADAPTER, "--endpoint", hub.url, "--json")
    assert again.exit_code == 0 and again.json()["downloaded_files"] == 0
    assert not [r for r in hub.requests[before:] if "/resolve/" in r[1]]
    assert catalog_counts(reg) == counts


def test_revision_tag_and_commit_and_paginated_tree(cli, reg, hub, tmp_path):
    v2 = make_bert_like(tmp_path / "v2", seed=9)
    commit = hub.add_repo(SHARDED, v2, ref="v2")
    hub.page_size = 2  # the tree arrives in pages linked by `Link: rel="next"`
    res = cli("pull", SHARDED, "--revision", "v2", "--endpoint", hub.url, "--json")
    assert res.exit_code == 0, dump(res)
    assert res.json()["commit"] == commit and res.json()["revision"] == "v2"
    main_commit = hub.repos[SHARDED].refs["main"]
    res = cli("pull", SHARDED, "--revision", main_commit, "--endpoint", hub.url, "--json")
    assert res.exit_code == 0, dump(res)
    with reg.catalog.reader() as s:
        revs = {r.commit_sha for r in s.scalars(select(Revision).join(Revision.repo).where(Revision.repo.has(repo_id=SHARDED)))}
        refs = {r.name: r.revision.commit_sha for r in s.scalars(select(Ref).where(Ref.repo.has(repo_id=SHARDED)))}
    assert revs == {commit, main_commit}
    assert refs == {"v2": commit}  # pulling by commit moves no ref


def test_lfs_redirect_to_cdn_is_followed_and_still_verified(cli, reg, hub):
    hub.faults.cdn_redirect = True  # like huggingface.co: 302 to a CDN that sends no Hub headers
    res = cli("pull", SHARDED, "--endpoint", hub.url, "--json")
    assert res.exit_code == 0, dump(res)
    assert any(r[1].startswith("/cdn/") for r in hub.requests)


def test_manifest_file_with_cross_repo_tokenizer(cli, reg, hub, tmp_path):
    manifest = tmp_path / "m.toml"
    base_commit = hub.repos[BASE].refs["main"]
    manifest.write_text(f"""
name = "{SHARDED}"
family = "transformers"
[[component]]
role = "weights"
patterns = ["model*.safetensors*"]
[[component]]
role = "config"
files = ["config.json"]
[[component]]
role = "tokenizer"
repo = "{BASE}"
revision = "{base_commit}"
files = ["vocab.txt", "tokenizer_config.json"]
""")
    res = cli("pull", SHARDED, "--endpoint", hub.url, "--manifest", manifest, "--json")
    assert res.exit_code == 0, dump(res)
    out = res.json()
    assert not out["inferred"] and out["manifest_source"] == str(manifest)
    tok = [c for c in out["components"] if c["role"] == "tokenizer"][0]
    assert tok["repo"] == BASE and tok["commit"] == base_commit and tok["pinned"] is True


def test_python_api_returns_frozen_result(registry_env, reg, hub):
    import registry
    from registry.services.pull import PullResult

    result = registry.pull(BGE, endpoint=hub.url, registry=reg)
    assert isinstance(result, PullResult) and result.state == "verified" and result.downloaded_files == 8
    with pytest.raises(dataclasses.FrozenInstanceError):
        result.state = "registered"  # type: ignore[misc]


def test_offline_pull_of_complete_model_succeeds_from_store(cli, reg, hub, monkeypatch):
    assert cli("pull", ADAPTER, "--endpoint", hub.url).exit_code == 0
    n = len(hub.requests)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    res = cli("pull", ADAPTER, "--endpoint", hub.url, "--json")
    assert res.exit_code == 0, dump(res)
    assert res.json()["offline"] is True and res.json()["downloaded_files"] == 0
    assert "already complete in the store" in res.stderr
    assert len(hub.requests) == n  # not one request
    # offline, a model that was never pulled: a clear error, exit 7
    res = cli("pull", SHARDED, "--endpoint", hub.url)
    assert res.exit_code == 7 and "not in the catalog" in res.stderr and "HF_HUB_OFFLINE" in res.stderr
    # a blob lost from the store: offline cannot prove completeness
    monkeypatch.delenv("HF_HUB_OFFLINE")
    f = hub.file(BASE, "model.safetensors")
    path = reg.store.path_for(f.sha256)
    path.chmod(0o644)
    path.unlink()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    res = cli("pull", ADAPTER, "--endpoint", hub.url)
    assert res.exit_code == 4 and "model.safetensors" in res.stderr


def test_unreachable_endpoint_falls_back_to_store(cli, reg, hub):
    assert cli("pull", BGE, "--endpoint", hub.url).exit_code == 0
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    res = cli("pull", BGE, "--endpoint", url, "--json")
    assert res.exit_code == 0, dump(res)
    assert res.json()["offline"] is True and "not reachable" in res.json()["note"]
    res = cli("pull", SHARDED, "--endpoint", url)
    assert res.exit_code == 7 and "not reachable" in res.stderr


def test_repull_keeps_a_registered_state(cli, reg, hub):
    assert cli("pull", SHARDED, "--endpoint", hub.url).exit_code == 0
    with reg.catalog.session() as s:
        s.scalars(select(Model).where(Model.name == SHARDED)).one().state = "registered"
    res = cli("pull", SHARDED, "--endpoint", hub.url, "--json")
    assert res.exit_code == 0 and res.json()["state"] == "registered"


def test_human_output_and_bad_arguments(cli, reg, hub, tmp_path):
    res = cli("pull", SHARDED, "--endpoint", hub.url)
    assert res.exit_code == 0 and "verified" in res.stdout and "weights" in res.stdout
    assert cli("pull", "not a repo!", "--endpoint", hub.url).exit_code == 2
    assert cli("pull", SHARDED, "--endpoint", "ftp://example").exit_code == 2
    assert cli("pull", SHARDED, "--endpoint", hub.url, "--manifest", tmp_path / "none.toml").exit_code == 2
    bad = write_json(tmp_path / "bad.toml", {"x": 1})
    res = cli("pull", SHARDED, "--endpoint", hub.url, "--manifest", bad)
    assert res.exit_code == 2 and "bad.toml" in res.stderr
    other = tmp_path / "other.toml"
    other.write_text('name = "test-org/other"\nfamily = "transformers"\n[[component]]\nrole = "config"\n'
                     'files = ["config.json"]\n')
    res = cli("pull", SHARDED, "--endpoint", hub.url, "--manifest", other)
    assert res.exit_code == 2 and "not 'test-org/sharded-bert'" in res.stderr
    assert catalog_counts(reg)["models"] == 1


def test_adapter_base_pinned_in_adapter_config_revision(cli, reg, hub, tmp_path):
    base_commit = hub.repos[BASE].refs["main"]
    hub.add_repo("test-org/pinned-lora", make_adapter(tmp_path / "pl", revision=base_commit))
    res = cli("pull", "test-org/pinned-lora", "--endpoint", hub.url, "--json")
    assert res.exit_code == 0, dump(res)
    base = [c for c in res.json()["components"] if c["role"] == "base"][0]
    assert base["commit"] == base_commit and base["pinned"] is True


def test_progress_bars_only_when_asked(cli, reg, hub, tmp_path):
    import io

    from registry.cli.progress import TqdmProgress
    from registry.services.pull import pull

    res = cli("pull", BGE, "--endpoint", hub.url)
    assert res.exit_code == 0 and "pull: " not in res.stderr  # stderr is not a terminal: no bars
    stream = io.StringIO()
    big = tmp_path / "big"
    write_json(big / "config.json", {"model_type": "bert"})
    from tests.conftest import write_safetensors

    write_safetensors(big / "model.safetensors", {"w": ("F32", [512, 1024])})  # 2 MiB: gets its own bar
    hub.add_repo("test-org/with-bars", big)
    result = pull(reg, "test-org/with-bars", endpoint=hub.url, progress=TqdmProgress(stream))
    assert result.downloaded_files == 2  # config.json came first, while the manifest was inferred
    text = stream.getvalue()
    assert "pull: 1 file" in text and "model.safetensors" in text and "2.10M" in text  # decimal units, as human_size prints 2.1 MB


def test_manifest_pinning_its_own_revision(cli, reg, hub, tmp_path):
    v2 = hub.add_repo(SHARDED, make_bert_like(tmp_path / "v2", seed=21), ref="v2")
    manifest = tmp_path / "pinned.toml"
    manifest.write_text(f'name = "{SHARDED}"\nfamily = "transformers"\n[[component]]\nrole = "weights"\n'
                        f'revision = "{v2}"\nfiles = ["model.safetensors"]\n')
    res = cli("pull", SHARDED, "--endpoint", hub.url, "--manifest", manifest, "--json")
    assert res.exit_code == 0, dump(res)
    assert res.json()["commit"] == v2
    res = cli("pull", SHARDED, "--revision", "main", "--endpoint", hub.url, "--manifest", manifest)
    assert res.exit_code == 2 and v2 in res.stderr
