"""Bad input for ``registry pull oci://``: each is refused with a clear error and exit code, nothing is recorded,
and nothing is written outside the store. Artifacts are pushed to the real distribution registry, then altered
through its own API (or served through a tampering proxy on loopback, for faults the registry cannot make)."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
from pathlib import Path

import httpx
import pytest

from registry.errors import IncompleteModel, IntegrityError, UsageError
from registry.hashing import sha256_file
from registry.oci import modelpack
from registry.services.oci_pull import pull_oci
from registry.services.oci_push import push_model
from tests.oci_helpers import proxy, put_blob, put_manifest, raw_manifest
from tests.pull_helpers import catalog_counts, events
from tests.test_oci import oci, source  # noqa: F401  (fixtures)

REPO = "models/adapter"


def _untouched(target, tmp_path: Path) -> None:
    """Nothing recorded, no blob and no partial in the store, nothing beside the catalog and the store."""
    assert catalog_counts(target) == {"models": 0, "revisions": 0, "blobs": 0, "files": 0}
    assert list(target.store.iter_blobs()) == [] and target.store.stray_files() == []
    assert {p.name for p in target.settings.home.iterdir()} <= {"catalog.db", "catalog.db-wal", "catalog.db-shm",
                                                                 "catalog.db.migrate.lock", "blobs"}
    assert not list(tmp_path.rglob("evil*"))


def _republish(oci, tag: str, change) -> str:
    """The pushed manifest, changed by ``change(manifest)``, put back under ``tag``: returns the reference."""
    manifest = raw_manifest(oci, REPO, "v1")
    change(manifest)
    put_manifest(oci, REPO, tag, manifest)
    return oci.ref(REPO, tag)


def _layer(manifest: dict, path: str) -> dict:
    return next(l for l in manifest["layers"] if l["annotations"]["org.cncf.model.filepath"] == path)


def _cli_refuses(cli, reg, reference: str, code: int, words: str, *, store_unchanged: bool = True) -> dict:
    """The CLI pulls into ``reg``: its catalog must stay exactly as it was, and its store too unless layers were
    already arriving (those are whole blobs, each proven to hash to its name, which a rerun reuses)."""
    before = (catalog_counts(reg), sorted(s for s, _ in reg.store.iter_blobs()), reg.store.stray_files())
    r = cli("pull", reference, "--insecure", "--json")
    after = (catalog_counts(reg), sorted(s for s, _ in reg.store.iter_blobs()), reg.store.stray_files())
    assert after[0] == before[0] and after[2] == before[2]
    if store_unchanged:
        assert after[1] == before[1]
    for sha, path in reg.store.iter_blobs():
        assert sha256_file(path) == sha
    assert r.exit_code == code, (r.stdout, r.stderr)
    err = r.json()
    assert words in err["message"], err["message"]
    assert "Traceback" not in r.stderr
    return err


@pytest.fixture
def tcli(cli, reg, target, monkeypatch):
    """The CLI, pulling into the empty target registry (``reg``, the source, is opened first)."""
    monkeypatch.setenv("REGISTRY_HOME", str(target.settings.home))
    monkeypatch.setenv("REGISTRY_DATABASE_URL", target.settings.database_url)
    return cli


@pytest.fixture
def pushed(source, oci):
    return push_model(source, "acme/adapter", oci.ref(REPO), insecure=True)


def test_a_layer_whose_bytes_do_not_match_its_digest(pushed, oci, target, tmp_path):
    with proxy(oci) as p:
        weights = _layer(raw_manifest(oci, REPO, "v1"), "adapter_model.safetensors")["digest"]
        p.faults.corrupt.add(weights)
        with pytest.raises(IntegrityError, match="do not match the layer's digest") as err:
            pull_oci(target, oci.ref(REPO, host=p.host), insecure=True, workers=1)
    assert "adapter_model.safetensors" in err.value.message and "nothing was recorded" in err.value.message
    assert catalog_counts(target)["models"] == 0 and not target.store.has(weights[7:])
    assert not target.store.partial_path(weights[7:]).exists()  # the bad bytes are not kept for a resume
    assert events(target, "oci.pull.refused")[0]["error"] == "IntegrityError"


@pytest.mark.parametrize("path", ["../evil.safetensors", "/tmp/evil.safetensors", "a/../../evil", "dir\\evil"])
def test_a_layer_path_that_leaves_the_model(tcli, target, pushed, oci, tmp_path, path):
    def change(m: dict) -> None:
        _layer(m, "adapter_model.safetensors")["annotations"]["org.cncf.model.filepath"] = path

    err = _cli_refuses(tcli, target, _republish(oci, "bad-path", change), 5, "unsafe file path")
    assert repr(path) in err["message"]
    _untouched(target, tmp_path)
    assert not list(tmp_path.rglob("evil*")) and not Path("/tmp/evil.safetensors").exists()


def test_layer_paths_in_the_record_are_checked_too(pushed, oci, target, tmp_path):
    """A record naming ``../evil`` never reaches the catalog, even with a manifest that agrees with it."""
    manifest = raw_manifest(oci, REPO, "v1")
    record_layer = _layer(manifest, ".registry/model.json")
    record = json.loads(httpx.get(f"{oci.url}/v2/{REPO}/blobs/{record_layer['digest']}").content)
    record["model"]["manifest"]["components"][0]["files"][0]["path"] = "../evil"
    body = modelpack.canonical_json(record)
    record_layer.update(put_blob(oci, REPO, body))
    _republish_with_config(oci, manifest, "bad-record")
    with pytest.raises(IntegrityError, match="tampered|unsafe"):
        pull_oci(target, oci.ref(REPO, "bad-record"), insecure=True)
    _untouched(target, tmp_path)


def _republish_with_config(oci, manifest: dict, tag: str) -> None:
    """After changing layers: a config whose diffIds list them, so only the change itself is wrong."""
    config = json.loads(httpx.get(f"{oci.url}/v2/{REPO}/blobs/{manifest['config']['digest']}").content)
    config["modelfs"]["diffIds"] = [l["digest"] for l in manifest["layers"]]
    manifest["config"].update(put_blob(oci, REPO, modelpack.canonical_json(config)))
    put_manifest(oci, REPO, tag, manifest)


def test_a_missing_layer(tcli, target, pushed, oci, tmp_path):
    weights = _layer(raw_manifest(oci, REPO, "v1"), "adapter_model.safetensors")["digest"]
    assert httpx.delete(f"{oci.url}/v2/{REPO}/blobs/{weights}").status_code == 202  # the registry's own API
    err = _cli_refuses(tcli, target, oci.ref(REPO), 4, "missing from the registry (404)", store_unchanged=False)
    assert err["details"]["missing"] == ["adapter: acme/adapter/adapter_model.safetensors"]
    assert catalog_counts(target)["models"] == 0


def test_an_artifact_that_lacks_a_file_its_record_requires(pushed, oci, target, tmp_path):
    manifest = raw_manifest(oci, REPO, "v1")
    manifest["layers"] = [l for l in manifest["layers"]
                          if l["annotations"]["org.cncf.model.filepath"] != "adapter_config.json"]
    _republish_with_config(oci, manifest, "short")
    with pytest.raises(IncompleteModel) as err:
        pull_oci(target, oci.ref(REPO, "short"), insecure=True)
    assert err.value.missing == ["adapter: acme/adapter/adapter_config.json"]
    _untouched(target, tmp_path)


def test_a_container_image(tcli, target, oci, tmp_path):
    layer = io.BytesIO()
    with tarfile.open(fileobj=layer, mode="w") as tar:
        info = tarfile.TarInfo("hello.txt")
        info.size = 5
        tar.addfile(info, io.BytesIO(b"hello"))
    gz = gzip.compress(layer.getvalue(), mtime=0)
    config = json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {
        "type": "layers", "diff_ids": ["sha256:" + hashlib.sha256(layer.getvalue()).hexdigest()]}}).encode()
    image = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
             "config": {"mediaType": "application/vnd.oci.image.config.v1+json", **put_blob(oci, "apps/hello", config)},
             "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", **put_blob(oci, "apps/hello", gz)}]}
    digest = put_manifest(oci, "apps/hello", "v1", image)
    _cli_refuses(tcli, target, oci.ref("apps/hello"), 2, "is a container image")
    index = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": [
        {"mediaType": image["mediaType"], "digest": digest, "size": len(json.dumps(image)),
         "platform": {"architecture": "amd64", "os": "linux"}}]}
    put_manifest(oci, "apps/hello", "multi", index)
    _cli_refuses(tcli, target, oci.ref("apps/hello", "multi"), 2, "image index")
    _untouched(target, tmp_path)


def test_an_unknown_media_type(tcli, target, pushed, oci, tmp_path):
    def change(m: dict) -> None:
        _layer(m, "adapter_config.json")["mediaType"] = "application/x-mystery"

    _cli_refuses(tcli, target, _republish(oci, "mystery", change), 5, "unknown media type 'application/x-mystery'")

    def archived(m: dict) -> None:
        _layer(m, "adapter_config.json")["mediaType"] = "application/vnd.cncf.model.weight.config.v1.tar"

    _cli_refuses(tcli, target, _republish(oci, "tarred", archived), 2, "raw layers only")
    _untouched(target, tmp_path)


def test_a_foreign_modelpack_artifact_without_a_record(pushed, oci, target, tmp_path):
    manifest = raw_manifest(oci, REPO, "v1")
    manifest["layers"] = [l for l in manifest["layers"] if "org.registry.record" not in l["annotations"]]
    _republish_with_config(oci, manifest, "foreign")
    with pytest.raises(UsageError, match="without a registry record"):
        pull_oci(target, oci.ref(REPO, "foreign"), insecure=True)
    _untouched(target, tmp_path)
