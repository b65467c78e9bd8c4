"""Bases are dependencies, not products: a manifest with ``base_only = true`` (vidore/colqwen2-base,
vidore/colpaligemma-3b-pt-448-base) is stored, verified and served as a dependency, but `load`, `register`
and `deploy` of it as a model are refused, naming the adapters that use it, unless `--as-base` is given.
Through both ingest paths (add and pull, as in test_ingest_paths)."""

from __future__ import annotations

import pytest

from registry.config import Settings
from registry.manifest.schema import load_manifest_file
from tests.conftest import make_bert_like, write_json
from tests.models_helpers import write_manifest
from tests.pull_helpers import make_adapter
from tests.test_ingest_paths import ingest  # noqa: F401  (fixture: add and pull)

pytestmark = pytest.mark.hubclient


@pytest.fixture
def curated_base(tmp_path, monkeypatch):
    """A curated manifests folder in which test-org/base is a base; registration after ingest is on."""
    curated = tmp_path / "manifests"
    path = write_manifest(curated / "test-org" / "base.toml", "test-org/base", "transformers", [
        {"role": "config", "files": ["config.json"]}, {"role": "weights", "files": ["model.safetensors"]}])
    path.write_text(path.read_text().replace('family = "transformers"\n', 'family = "transformers"\nbase_only = true\n'))
    monkeypatch.setenv("REGISTRY_MANIFESTS", str(curated))
    monkeypatch.setenv("REGISTRY_SMOKE", "1")  # a base must stay a dependency even when ingests register
    return curated


def test_a_base_is_stored_and_verified_but_not_a_product(ingest, cli, curated_base, tmp_path):  # noqa: F811
    r = ingest("test-org/base", make_bert_like(tmp_path / "base"))
    assert r.exit_code == 0, r.stderr
    out = r.json()
    assert out["state"] == "verified" and out["registration"]["smoke"] is None
    assert "is a base (base_only)" in r.stderr and "not registered as a model of its own" in r.stderr
    for args in (("load", "test-org/base"), ("register", "test-org/base"),
                 ("deploy", "test-org/base", "--target", tmp_path / "d")):
        r = cli(*args)
        assert r.exit_code == 9, (args, r.stderr)
        assert "is a base" in r.stderr and "no model in the catalog uses it as its base yet" in r.stderr
        assert "--as-base" in r.stderr
    assert not (tmp_path / "d").exists()
    # an adapter over it: the refusal names it
    r = ingest("test-org/lora", make_adapter(tmp_path / "lora", base="test-org/base"), "--no-smoke")
    assert r.exit_code == 0, r.stderr
    lora = f"test-org/lora@{r.json()['commit'][:12]}"
    r = cli("load", "test-org/base", "--json")
    assert r.exit_code == 9 and r.json()["details"]["used_by"] == [lora]
    assert f"it is the base of {lora}; load one of those instead" in r.json()["message"]
    shown = cli("show", "test-org/base", "--json").json()
    assert shown["summary"]["base_only"] is True and shown["base_of"] == [lora]
    assert f"base only: a dependency of {lora}" in cli("show", "test-org/base").stdout
    assert cli("show", "test-org/lora", "--json").json()["summary"]["base_only"] is False
    # said explicitly, the bare base may be used
    r = cli("register", "test-org/base", "--as-base", "--no-smoke")
    assert r.exit_code == 0 and "left verified" in r.stdout


def _colqwen2_base_layout(folder):
    """The files vidore/colqwen2-base's curated manifest names (bytes of a tiny stand-in: nothing is loaded)."""
    make_bert_like(folder, shards=2)
    write_json(folder / "preprocessor_config.json", {"image_processor_type": "Qwen2VLImageProcessor"})
    write_json(folder / "chat_template.json", {"chat_template": "{{ messages }}"})
    for name in ("tokenizer.json", "vocab.json", "added_tokens.json", "special_tokens_map.json"):
        write_json(folder / name, {})
    (folder / "merges.txt").write_text("#version: 0.2\n")
    return folder


def _serve_at(hub, repo_id: str, commit: str) -> None:
    """Serve hubsim's newest commit of ``repo_id`` under ``commit`` (the curated manifest pins the real one)."""
    repo = hub.repos[repo_id]
    repo.commits[commit] = repo.commits.pop(repo.refs["main"])
    repo.refs["main"] = commit


def test_vidore_colqwen2_base_pulled_alone_is_not_a_loadable_product(ingest, cli, tmp_path, monkeypatch):  # noqa: F811
    monkeypatch.setenv("REGISTRY_SMOKE", "1")
    folder = _colqwen2_base_layout(tmp_path / "base")
    pinned = {c.revision for c in load_manifest_file(Settings.from_env().manifests_dir / "vidore/colqwen2-base.toml")
              .components}
    if ingest.kind == "pull":
        ingest.hub.add_repo("vidore/colqwen2-base", folder)
        for commit in pinned - {None}:
            _serve_at(ingest.hub, "vidore/colqwen2-base", commit)
        r = cli("pull", "vidore/colqwen2-base", "--endpoint", ingest.hub.url, "--json")
    else:
        r = ingest("vidore/colqwen2-base", folder)
    assert r.exit_code == 0, r.stderr
    assert r.json()["manifest_source"].endswith("vidore/colqwen2-base.toml")  # the curated manifest
    assert r.json()["state"] == "verified" and "is a base" in r.stderr
    r = cli("load", "vidore/colqwen2-base")
    assert r.exit_code == 9 and "is a base" in r.stderr
    listed = {m["name"]: m for m in cli("list", "--json").json()["models"]}
    assert listed["vidore/colqwen2-base"]["state"] == "verified" and listed["vidore/colqwen2-base"]["base_only"]


def test_the_curated_bases_are_marked():
    root = Settings.from_env().manifests_dir
    marked = {p.relative_to(root).with_suffix("").as_posix() for p in root.rglob("*.toml")
              if load_manifest_file(p).base_only}
    assert marked == {"vidore/colqwen2-base", "vidore/colpaligemma-3b-pt-448-base"}


@pytest.mark.parametrize("value", ['"yes"', "1", "[true]"])
def test_base_only_must_be_a_boolean(tmp_path, value):
    from registry.errors import ManifestError

    path = write_manifest(tmp_path / "m.toml", "acme/x", "transformers", [{"role": "weights", "files": ["a"]}])
    path.write_text(path.read_text().replace('family = "transformers"\n', f'family = "transformers"\nbase_only = {value}\n'))
    with pytest.raises(ManifestError, match="base_only: must be bool"):
        load_manifest_file(path)
