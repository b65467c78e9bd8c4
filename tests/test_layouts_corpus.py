"""The corpus of real Hub layouts (tests/layouts/): for each repo, the inferred manifest requires exactly
what the family's library reads (``expect.required``, written per repo from the library's loading code,
see docs/manifests.md), nothing is missing that the repo has, and no unneeded weight bytes are required:
no ``onnx/``, no second weight format, no ``checkpoint-*``. Adapters see their base when the corpus
has it, as pull and add do."""

from __future__ import annotations

import pytest

from registry.errors import IncompleteModel, ManifestError
from registry.manifest.infer import RepoView, infer_manifest
from registry.manifest.required import is_ignored
from registry.manifest.resolve import RepoFile, select
from tests.layouts import load_all

CORPUS = load_all()
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".onnx", ".onnx_data", ".h5", ".msgpack", ".ot", ".gguf")


def _view(repo: str) -> RepoView | None:
    layout = CORPUS.get(repo)
    return None if layout is None else RepoView(repo, tuple(layout.paths), layout.read_json)


def _infer(key: str):
    layout = CORPUS[key]
    return infer_manifest(layout.repo, layout.paths, layout.read_json, lambda base, rev: _view(base))


def test_the_corpus_is_large_and_cited():
    # issue 8 asks for at least 40 repos (docs/manifests.md shows the coverage)
    assert len(CORPUS) >= 41
    for layout in CORPUS.values():
        assert layout.data["sources"], layout.repo
        assert all(s.startswith("https://") for s in layout.data["sources"]), layout.repo
        assert layout.data.get("listing"), layout.repo  # complete, or what part of the file list is public


@pytest.mark.parametrize("key", sorted(CORPUS))
def test_inferred_manifest_requires_what_the_library_reads(key):
    layout = CORPUS[key]
    repo = layout.repo
    expect = layout.data["expect"]
    if "refused" in expect:
        kind, words = expect["refused"]
        with pytest.raises(ManifestError if kind == "manifest" else IncompleteModel) as info:
            manifest = _infer(key)
            missing = [m for c in manifest.components for m in select(c, _listing(c.repo)).missing]
            if missing:
                raise IncompleteModel("missing", missing=missing)
        assert words in (info.value.message if kind == "manifest" else "\n".join(info.value.missing))
        return
    manifest = _infer(key)
    assert manifest.family == expect["family"]
    assert manifest.inference.rule == expect["rule"]
    required = sorted(f"{c.repo}/{f.path}" if c.repo != repo else f.path
                      for c in manifest.components if c.required for f in c.files)
    required += sorted(f"{c.repo}/{p}" if c.repo != repo else p
                       for c in manifest.components if c.required for p in c.patterns)
    assert sorted(required) == sorted(expect["required"])
    # nothing missing that the repo (and its base, where the corpus has it) holds
    for c in manifest.components:
        if c.repo in CORPUS:
            assert select(c, _listing(c.repo)).missing == tuple(expect.get("missing", ())), c
    # no unneeded weight bytes, whatever the expectation says
    own = [f.path for c in manifest.components if c.repo == repo and c.required for f in c.files]
    assert not [p for p in own if is_ignored(p)]
    weights = {p for p in own if p.endswith(WEIGHT_SUFFIXES)}
    assert not ({"model.safetensors", "pytorch_model.bin"} <= weights)
    assert not (any(p.endswith(".safetensors") and "-of-" in p for p in weights)
                and any(p.startswith("pytorch_model") for p in weights))


def _listing(repo: str) -> dict[str, RepoFile]:
    layout = CORPUS.get(repo)
    if layout is None:
        return {}
    return {p: RepoFile(p, size or 0) for p, size in layout.sizes.items()}


def test_coverage_table_matches_the_docs():
    """docs/manifests.md shows the corpus coverage (family x count); it must be the corpus's own."""
    from pathlib import Path

    counts: dict[str, int] = {}
    for layout in CORPUS.values():
        counts[layout.family_group] = counts.get(layout.family_group, 0) + 1
    doc = (Path(__file__).resolve().parent.parent / "docs" / "manifests.md").read_text()
    for group, n in counts.items():
        assert f"| {group} | {n} |" in doc, (group, n)
    assert f"| total | {len(CORPUS)} |" in doc
