"""The TOML schema: good manifests parse; garbled ones raise ManifestError naming the file and the key.
Selection and the resolved (locked) form with its root digest."""

from __future__ import annotations

from pathlib import Path

import pytest

from registry.errors import ManifestError
from registry.hashing import root_digest
from registry.manifest.resolve import LockedFile, RepoFile, ResolvedManifest, lock, select
from registry.manifest.schema import ComponentSpec, FileSpec, load_manifest_file

SHA = "a" * 64
GOOD = f'''
schema = 1
name = "acme/tiny"
family = "transformers"
description = "a tiny model"

[[component]]
role = "weights"
files = [{{ path = "model.safetensors", size = 10, sha256 = "{SHA}" }}]

[[component]]
role = "config"
files = ["config.json"]

[[component]]
role = "base"
repo = "acme/base"
revision = "{"b" * 40}"
patterns = ["model*.safetensors"]
exclude = ["*-bad.safetensors"]
required = true

[[component]]
role = "tokenizer"
required = false
files = ["tokenizer.json"]
note = "optional"

[smoke]
texts = ["hello"]
image = {{ width = 32, height = 32, seed = 1 }}
expect = {{ dim = 8 }}
'''


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "acme" / "tiny.toml"
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(text)
    return p


def test_a_good_manifest_parses(tmp_path):
    m = load_manifest_file(write(tmp_path, GOOD))
    assert (m.name, m.family, m.inferred, m.description) == ("acme/tiny", "transformers", False, "a tiny model")
    assert m.source == str(tmp_path / "acme" / "tiny.toml")
    weights, config, base, tok = m.components
    assert weights.files == (FileSpec("model.safetensors", 10, SHA),) and weights.pinned_digests
    assert config.repo == "acme/tiny" and config.files == (FileSpec("config.json"),) and not config.pinned_digests
    assert base.repo == "acme/base" and base.pinned_commit and base.patterns == ("model*.safetensors",)
    assert not tok.required and tok.note == "optional"
    assert m.smoke.texts == ("hello",) and m.smoke.image.width == 32 and m.smoke.expect == {"dim": 8}
    assert m.repos() == ["acme/tiny", "acme/base"]
    assert m.to_dict()["components"][0]["files"] == [{"path": "model.safetensors", "size": 10, "sha256": SHA}]


GARBLED = [
    # (replace this, with that, the key the error must name, words it must contain)
    ('family = "transformers"', 'family = "transformers', None, "not valid TOML"),
    ('description = "a tiny model"', 'colour = "red"', "colour", "unknown key"),
    ('note = "optional"', 'note = "optional"\nweight = 1', "component[3].weight", "unknown key"),
    ('required = true', 'required = "yes"', "component[2].required", "must be bool"),
    ('schema = 1', 'schema = 2', "schema", "unsupported schema"),
    ('schema = 1', 'schema = true', "schema", "must be an integer"),
    ('family = "transformers"', 'family = "keras"', "family", "unknown loader family"),
    ('family = "transformers"\n', '', "family", "is required"),
    ('role = "config"', 'role = "vision"', "component[1].role", "unknown role"),
    (f'sha256 = "{SHA}"', 'sha256 = "ABC"', "component[0].files[0].sha256", "64 lowercase hex"),
    ('size = 10', 'size = -1', "component[0].files[0].size", "must not be negative"),
    ('size = 10', 'size = "10"', "component[0].files[0].size", "must be int"),
    ('path = "model.safetensors"', 'path = "../model.safetensors"', "component[0].files[0].path", "'..'"),
    ('path = "model.safetensors"', 'path = "/etc/passwd"', "component[0].files[0].path", "absolute"),
    ('path = "model.safetensors"', 'path = "a\\tb"', "component[0].files[0].path", "control characters"),
    ('files = ["config.json"]', 'files = ["config.json", "config.json"]', "component[1].files", "twice"),
    ('files = ["config.json"]', 'files = [3]', "component[1].files[0]", "path string or a table"),
    ('files = ["config.json"]', 'patterns = []', "component[1]", "needs 'files' or 'patterns'"),
    ('repo = "acme/base"', 'repo = "../../etc"', "component[2].repo", "not a repo id"),
    (f'revision = "{"b" * 40}"', 'revision = "../main"', "component[2].revision", "not a commit id"),
    ('patterns = ["model*.safetensors"]', 'patterns = [""]', "component[2].patterns", "non-empty glob"),
    ('name = "acme/tiny"', 'name = "not a repo"', "name", "not a repo id"),
    ('texts = ["hello"]', 'texts = []', "smoke.texts", "non-empty strings"),
    ('width = 32', 'width = 4', "smoke.image", "between 8 and 4096"),
    ('expect = { dim = 8 }', 'expect = 3', "smoke.expect", "must be dict"),
]


@pytest.mark.parametrize("old, new, key, words", GARBLED, ids=[g[3] + ":" + str(g[2]) for g in GARBLED])
def test_garbled_manifest_names_the_file_and_the_key(tmp_path, old, new, key, words):
    assert old in GOOD
    path = write(tmp_path, GOOD.replace(old, new, 1))
    with pytest.raises(ManifestError) as info:
        load_manifest_file(path)
    err = info.value
    assert err.exit_code == 2
    assert str(path) in err.message and err.details["file"] == str(path)
    assert words in err.message
    if key is not None:
        assert f": {key}: " in err.message and err.details["key"] == key
    else:
        assert "line" in err.message  # TOML errors point at the line instead


def test_components_must_be_tables(tmp_path):
    path = write(tmp_path, 'name = "acme/tiny"\nfamily = "peft"\ncomponent = ["weights"]\n')
    with pytest.raises(ManifestError, match=r"component\[0\]: must be a table"):
        load_manifest_file(path)


def test_missing_and_unreadable_manifest_files(tmp_path):
    with pytest.raises(ManifestError, match="manifest file not found"):
        load_manifest_file(tmp_path / "nope.toml")
    p = tmp_path / "bin.toml"
    p.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(ManifestError, match="cannot read manifest"):
        load_manifest_file(p)


# ---- select, lock, resolved form ----------------------------------------------------------------

def test_select_files_patterns_missing_and_mismatches():
    listing = {p: RepoFile(p, 10, SHA) for p in ("model-1.safetensors", "model-2.safetensors", "model-bad.safetensors",
                                                  "checkpoint-9/model-3.safetensors", "onnx/model.safetensors")}
    listing["config.json"] = RepoFile("config.json", 5, "c" * 64)
    comp = ComponentSpec(role="weights", repo="acme/x", patterns=("model*.safetensors", "*/model*.safetensors"),
                         exclude=("*-bad.safetensors",))
    sel = select(comp, listing)
    # training leftovers and other formats never count, even when a pattern matches them
    assert sel.paths == ("model-1.safetensors", "model-2.safetensors")
    assert sel.missing == ("weights: */model*.safetensors (no file matches)",)
    # ... unless the pattern names their folder
    sel = select(ComponentSpec(role="weights", repo="acme/x", patterns=("onnx/*",)), listing)
    assert sel.paths == ("onnx/model.safetensors",)
    comp = ComponentSpec(role="config", repo="acme/x",
                         files=(FileSpec("config.json", 6, "d" * 64), FileSpec("generation_config.json")))
    sel = select(comp, listing)
    assert sel.paths == ("config.json",)
    assert sel.missing == ("config: generation_config.json",)
    assert sel.mismatched == ("config: config.json: size is 5, the manifest expects 6",
                              f"config: config.json: sha256 is {'c' * 64}, the manifest expects {'d' * 64}")
    optional = ComponentSpec(role="tokenizer", repo="acme/x", files=(FileSpec("tokenizer.json"),), required=False)
    assert select(optional, listing).missing == ()
    nothing = ComponentSpec(role="head", repo="acme/x", patterns=("*_linear.pt",))
    assert select(nothing, listing).missing == ("head: *_linear.pt (no file matches)",)


def _locked(path: str, sha: str, size: int = 10) -> LockedFile:
    return LockedFile(path, size, sha, "e" * 64, "f" * 40, False)


def test_lock_and_the_resolved_form(tmp_path):
    m = load_manifest_file(write(tmp_path, GOOD))
    listing = {"model.safetensors": RepoFile("model.safetensors", 10, SHA), "config.json": RepoFile("config.json", 3)}
    base_listing = {"model-1.safetensors": RepoFile("model-1.safetensors", 10, "1" * 64)}
    sels = [select(m.components[0], listing), select(m.components[1], listing), select(m.components[2], base_listing),
            select(m.components[3], listing)]
    files = {("acme/tiny", "model.safetensors"): _locked("model.safetensors", SHA),
             ("acme/tiny", "config.json"): _locked("config.json", "2" * 64, 3),
             ("acme/base", "model-1.safetensors"): _locked("model-1.safetensors", "1" * 64)}
    resolved = lock(m, sels, {"acme/tiny": "9" * 40, "acme/base": "b" * 40}, files)
    assert [(c.role, c.repo, c.pinned, len(c.files)) for c in resolved.components] == [
        ("weights", "acme/tiny", True, 1), ("config", "acme/tiny", False, 1), ("base", "acme/base", True, 1),
        ("tokenizer", "acme/tiny", False, 0)]
    # the root covers repo/path, size and sha256 of every file
    assert resolved.root_digest == root_digest([("acme/tiny/model.safetensors", 10, SHA),
                                                ("acme/tiny/config.json", 3, "2" * 64),
                                                ("acme/base/model-1.safetensors", 10, "1" * 64)])
    data = resolved.to_dict()
    assert data["root_digest"] == resolved.root_digest and data["schema"] == 1
    assert set(data) == {"schema", "name", "family", "inferred", "source", "description", "expected_missing_keys",
                         "smoke", "components", "root_digest", "inference", "first_use", "first_use_source"}
    again = ResolvedManifest.from_dict(data)
    assert again == resolved and again.root_digest == resolved.root_digest
