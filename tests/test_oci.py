"""``registry push`` / ``registry pull oci://`` through the real CNCF distribution registry; skopeo (a third-party
client) inspects and copies what we push, and the copy validates against the ModelPack and OCI schemas."""

from __future__ import annotations

import dataclasses
import json

import pytest

from registry.errors import ConflictError, RevisionNotFound, UsageError
from registry.services.context import Registry
from registry.services.listing import show_model
from registry.services.oci_pull import pull_oci
from registry.services.oci_push import push_model
from registry.services.verify import verify
from tests.conftest import make_bert_like, write_json, write_safetensors
from tests.oci_helpers import distribution, raw_manifest, read_layout, skopeo, validate_modelpack
from tests.pull_helpers import catalog_counts, events
from tests.serve_helpers import add_registered, set_state


@pytest.fixture
def oci(tmp_path):
    with distribution(tmp_path / "distribution") as server:
        yield server


@pytest.fixture
def source(reg, tmp_path):
    """A base, and a LoRA adapter over it with a smoke run; both registered."""
    add_registered(reg, make_bert_like(tmp_path / "base", hidden=16), "acme/base", smoke=True)
    adapter = tmp_path / "adapter"
    write_json(adapter / "adapter_config.json", {"peft_type": "LORA", "base_model_name_or_path": "acme/base", "r": 2})
    write_safetensors(adapter / "adapter_model.safetensors", {"base_model.model.layer.0.lora_A.weight": ("F32", [2, 8])})
    add_registered(reg, adapter, "acme/adapter", smoke=True)
    return reg


def _shown(registry: Registry, name: str) -> dict:
    detail = dataclasses.asdict(show_model(registry, name))
    detail["summary"].pop("created_at")
    for run in detail["smoke_runs"]:
        run.pop("id", None)
    for link in detail["lineage"]:
        link.pop("model_state", None)  # compared on its own: a pull lands verified
    return detail


def test_push_writes_modelpack_artifacts_that_skopeo_reads_and_the_schemas_accept(source, oci, tmp_path):
    result = push_model(source, "acme/adapter", oci.ref("models/adapter"), insecure=True)
    assert [(a.repo, a.unchanged) for a in result.artifacts] == [("acme/base", False), ("acme/adapter", False)]
    assert result.tag == "v1" and result.uploaded_blobs == result.blobs and result.mounted_blobs == 0

    raw = skopeo("inspect", "--raw", "--tls-verify=false", f"docker://{oci.host}/models/adapter:v1")
    assert raw.returncode == 0, raw.stderr
    manifest = json.loads(raw.stdout)
    assert manifest == raw_manifest(oci, "models/adapter", "v1")
    layers = {l["annotations"]["org.cncf.model.filepath"]: l for l in manifest["layers"]}
    assert layers["adapter_model.safetensors"]["mediaType"] == "application/vnd.cncf.model.weight.v1.raw"
    assert layers["adapter_config.json"]["mediaType"] == "application/vnd.cncf.model.weight.config.v1.raw"
    assert layers[".registry/model.json"]["annotations"]["org.registry.record"] == "v1"
    # the base is an artifact of its own, named by digest
    deps = json.loads(manifest["annotations"]["org.registry.dependencies"])
    assert [(d["repo"], d["digest"]) for d in deps] == [("acme/base", result.artifacts[0].digest)]
    base = raw_manifest(oci, "models/adapter", deps[0]["digest"])
    base_layers = {l["annotations"]["org.cncf.model.filepath"]: l["mediaType"] for l in base["layers"]}
    assert base_layers["model.safetensors"] == "application/vnd.cncf.model.weight.v1.raw"
    assert base_layers["vocab.txt"] == "application/vnd.cncf.model.weight.config.v1.raw"
    shown = show_model(source, "acme/base")
    weights = next(f for c in shown.components for f in c.files if f.path == "model.safetensors")
    assert next(l for l in base["layers"] if l["annotations"]["org.cncf.model.filepath"] == "model.safetensors")[
        "digest"] == f"sha256:{weights.sha256}"  # a layer's digest is the store's blob identity

    layout = tmp_path / "layout"
    for tag in ("v1", result.artifacts[0].tag):
        copied = skopeo("copy", "--src-tls-verify=false", f"docker://{oci.host}/models/adapter:{tag}",
                        f"oci:{layout}:{tag}")
        assert copied.returncode == 0, copied.stderr
        got, config = read_layout(layout, tag)
        validate_modelpack(got, config)
        assert config["descriptor"]["name"] == ("acme/adapter" if tag == "v1" else "acme/base")
    assert read_layout(layout, "v1")[0] == manifest  # skopeo kept the bytes: same digest


def test_pull_reconstructs_the_catalog_records_in_another_registry(source, oci, target):
    pushed = push_model(source, "acme/adapter", oci.ref("models/adapter"), insecure=True)
    result = pull_oci(target, oci.ref("models/adapter"), insecure=True)
    assert result.models == ("acme/base", "acme/adapter") and result.digest == pushed.digest
    blobs = {f.sha256 for name in result.models for c in show_model(source, name).components for f in c.files}
    assert result.state == "verified" and (result.downloaded_files, result.reused_files) == (len(blobs), 0)
    for name in ("acme/base", "acme/adapter"):
        mine, theirs = _shown(target, name), _shown(source, name)
        assert mine["summary"]["state"] == "verified"  # registered again here only by a smoke run here
        mine["summary"].pop("state"), theirs["summary"].pop("state")
        assert mine == theirs  # components, files, digests, lineage and smoke runs as the source has them
    assert verify(target, deep=True).ok
    again = pull_oci(target, f"oci://{oci.host}/models/adapter@{pushed.digest}", insecure=True)
    assert (again.downloaded_files, again.reused_files) == (0, len(blobs))
    assert [e["digest"] for e in events(target, "oci.pull")][-1] == pushed.digest


def test_repush_is_a_head_per_artifact_and_another_repo_mounts_every_blob(source, oci):
    first = push_model(source, "acme/adapter", oci.ref("models/adapter"), insecure=True)
    again = push_model(source, "acme/adapter", oci.ref("models/adapter"), insecure=True)
    assert again.unchanged and again.uploaded_blobs == 0 and again.digest == first.digest
    moved = push_model(source, "acme/adapter", oci.ref("team/adapter", "prod"), insecure=True)
    assert moved.digest == first.digest and moved.uploaded_blobs == 0
    assert moved.mounted_blobs == moved.blobs  # cross-repo mount from models/adapter, which the events name
    retag = push_model(source, "acme/adapter", oci.ref("models/adapter", "v2"), insecure=True)
    assert retag.unchanged and raw_manifest(oci, "models/adapter", "v2") == raw_manifest(oci, "models/adapter", "v1")


def test_pull_of_a_registered_state_change_is_a_new_artifact(source, oci, target):
    """The record travels with the bytes: a state change is a new manifest, the blobs are shared."""
    first = push_model(source, "acme/adapter", oci.ref("models/adapter"), insecure=True)
    set_state(source, "acme/adapter", "verified")
    second = push_model(source, "acme/adapter", oci.ref("models/adapter"), insecure=True)
    assert second.digest != first.digest and second.uploaded_blobs == 2  # the new record and the config naming it
    assert pull_oci(target, oci.ref("models/adapter"), insecure=True).digest == second.digest


def test_cli_push_and_pull(cli, source, oci, tmp_path, monkeypatch):
    r = cli("push", "acme/adapter", oci.ref("models/adapter", None), "--insecure", "--json")
    assert r.exit_code == 0, r.stderr
    out = r.json()
    assert out["tag"] == "latest" and out["reference"].startswith(f"oci://{oci.host}/models/adapter@sha256:")
    assert "nothing sent" in cli("push", "acme/adapter", oci.ref("models/adapter", None), "--insecure").stdout
    monkeypatch.setenv("REGISTRY_HOME", str(tmp_path / "other"))
    monkeypatch.setenv("REGISTRY_DATABASE_URL", f"sqlite:///{tmp_path / 'other' / 'catalog.db'}")
    r = cli("pull", oci.ref("models/adapter", None), "--insecure", "--json")
    assert r.exit_code == 0, r.stderr
    got = r.json()
    assert got["name"] == "acme/adapter" and got["state"] == "verified" and got["digest"] == out["digest"]
    assert [c["role"] for c in got["components"]] == [c["role"] for c in cli("show", "acme/adapter", "--json")
                                                      .json()["components"]]
    text = cli("pull", oci.ref("models/adapter", None), "--insecure")
    assert text.exit_code == 0 and "already in the store" in text.stdout


@pytest.mark.parametrize("args, code, words", [
    (("push", "acme/adapter", "oci://127.0.0.1:1/m@sha256:" + "a" * 64, "--insecure"), 2, "not a digest"),
    (("push", "acme/adapter", "oci://registry.example.com/m:v1", "--insecure"), 2, "loopback"),
    (("push", "acme/adapter", "docker://127.0.0.1/m"), 2, "oci://"),
    (("push", "acme/adapter", "oci://127.0.0.1:1/Bad_Repo"), 2, "repository component"),
    (("push", "acme/nothing", "oci://127.0.0.1:1/m:v1", "--insecure"), 3, "no model named"),
    (("push", "acme/adapter", "oci://127.0.0.1:1/m:v1", "--insecure"), 7, "cannot connect"),
    (("pull", "oci://127.0.0.1:1/m:v1", "--revision", "main"), 2, "--revision"),
    (("pull", "oci://127.0.0.1:1/m:bad tag", "--insecure"), 2, "whitespace"),
    (("pull", "acme/adapter", "--insecure"), 2, "oci:// references only"),
])
def test_cli_bad_arguments(cli, source, args, code, words):
    before = catalog_counts(source)
    r = cli(*args, "--json")
    assert r.exit_code == code, (r.stdout, r.stderr)
    assert words in r.json()["message"] and "Traceback" not in r.stderr
    assert catalog_counts(source) == before


def test_quarantined_models_and_missing_blobs_are_not_pushed(source, oci):
    set_state(source, "acme/base", "quarantined", "bad smoke")
    with pytest.raises(ConflictError, match="quarantined"):
        push_model(source, "acme/base", oci.ref("models/base"), insecure=True)
    with pytest.raises(RevisionNotFound):  # nothing was pushed under that name
        pull_oci(source, oci.ref("models/base"), insecure=True)
    with pytest.raises(UsageError, match="digest"):
        push_model(source, "acme/adapter", f"oci://{oci.host}/m@sha256:{'0' * 64}", insecure=True)


@pytest.mark.ml
def test_real_minilm_registered_here_pushed_pulled_and_registered_there(cli, minilm_dir, oci, tmp_path, monkeypatch):
    """The real all-MiniLM-L6-v2 through the real registry: the pull ends registered by its own smoke run, whose
    fingerprint equals the one the record carried from the source."""
    minilm = "sentence-transformers/all-MiniLM-L6-v2"
    monkeypatch.setenv("REGISTRY_SMOKE", "1")
    r = cli("add", minilm_dir, "--name", minilm, "--device", "cpu", "--json")
    assert r.exit_code == 0 and r.json()["state"] == "registered", r.stderr
    assert cli("push", minilm, oci.ref("models/minilm"), "--insecure").exit_code == 0
    monkeypatch.setenv("REGISTRY_HOME", str(tmp_path / "there"))
    monkeypatch.setenv("REGISTRY_DATABASE_URL", f"sqlite:///{tmp_path / 'there' / 'catalog.db'}")
    r = cli("pull", oci.ref("models/minilm"), "--insecure", "--device", "cpu", "--json")
    assert r.exit_code == 0, r.stderr
    assert r.json()["state"] == "registered" and r.json()["registration"]["smoke"]["passed"] is True
    runs = cli("show", minilm, "--json").json()["smoke_runs"]
    assert len(runs) == 2 and runs[0]["fingerprint"] == runs[1]["fingerprint"]  # the source's run, and ours
