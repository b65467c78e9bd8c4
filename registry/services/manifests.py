"""Choosing a model's manifest, and resolving components that live in other repos from the catalog."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy.orm import Session

from registry.catalog.queries import find_revision
from registry.config import Settings
from registry.errors import ManifestError
from registry.manifest.infer import BaseLookup, ReadJson, RepoView, family_from_files, infer_manifest
from registry.manifest.jsonread import expected_type, parse_json
from registry.manifest.resolve import LockedFile, RepoFile, Selection
from registry.manifest.rules import GENERIC_FAMILIES
from registry.manifest.schema import ComponentSpec, Inference, Manifest, curated_manifest_path, load_manifest_file

if TYPE_CHECKING:
    from registry.services.context import Registry

SMALL_JSON = 4 * 1024 * 1024  # inference reads only JSON files up to this size


def choose_manifest(settings: Settings, name: str, manifest_file: Path | None, paths: Sequence[str],
                    read_json: ReadJson, base_lookup: BaseLookup | None = None) -> Manifest:
    """An explicit ``--manifest`` file, else the curated one for ``name``, else one inferred from the files.

    A curated manifest is chosen by name, so the files are asked too: where they carry another family's
    markers, the files win (a manifest inferred from them is used) and the disagreement is reported."""
    if manifest_file is not None:
        manifest = _named(load_manifest_file(Path(manifest_file)), name)
        return _with_files_view(manifest, "explicit", f"--manifest {manifest.source}", name, paths, read_json,
                                override=False, base_lookup=base_lookup)
    if (curated := curated_manifest_path(settings.manifests_dir, name)) is not None:
        manifest = _named(load_manifest_file(curated), name)
        return _with_files_view(manifest, "curated", f"curated manifest {manifest.source}", name, paths, read_json,
                                override=True, base_lookup=base_lookup)
    return infer_manifest(name, paths, read_json, base_lookup)


def _named(manifest: Manifest, name: str) -> Manifest:
    if manifest.name != name:
        raise ManifestError(
            f"{manifest.source}: name: the manifest is for {manifest.name!r}, not {name!r}",
            details={"file": manifest.source, "key": "name"},
        )
    return manifest


def _with_files_view(manifest: Manifest, rule: str, reason: str, name: str, paths: Sequence[str],
                     read_json: ReadJson, *, override: bool, base_lookup: BaseLookup | None) -> Manifest:
    """Compare the manifest's family with the one the repo's own files show (no base is looked up:
    only a marker in the repo itself can contradict a manifest)."""
    try:
        found = family_from_files(name, paths, read_json) if paths else None
    except ManifestError as exc:
        if override:
            raise
        # --manifest is how a user settles what the files cannot (two families' markers): keep it, say why
        return dataclasses.replace(manifest, inference=Inference(rule, reason, (f"{exc.message}: --manifest is used as given",)))
    if found is None or found.family in GENERIC_FAMILIES or found.rule == "adapter" or found.family == manifest.family:
        agree = f" (the files agree: {found.reason})" if found is not None and found.family == manifest.family else ""
        return dataclasses.replace(manifest, inference=Inference(rule, reason + agree))
    why = (f"{manifest.source} says family {manifest.family}, but the files say {found.family} ({found.reason})")
    if not override:
        return dataclasses.replace(manifest, inference=Inference(rule, reason, (why + ": --manifest is used as given",)))
    inferred = infer_manifest(name, paths, read_json, base_lookup)
    assert inferred.inference is not None
    return dataclasses.replace(inferred, inference=dataclasses.replace(
        inferred.inference, disagreements=(why + ": the files win, the manifest is inferred from them",
                                           *inferred.inference.disagreements)))


def strict_json_reader(read_bytes: Any, size_of: Any, label: str = "") -> ReadJson:
    """``read_json`` over ``read_bytes(path)``: small files only, parsed strictly (registry.manifest.jsonread)."""
    def read_json(path: str) -> Any:
        size = size_of(path)
        if size is None:
            return None
        where = f"{label}/{path}" if label else path
        if size > SMALL_JSON:
            raise ManifestError(f"{where}: {size} bytes is too large for a JSON config (at most {SMALL_JSON})",
                                details={"file": path, "key": None})
        return parse_json(read_bytes(path), where, expect=expected_type(path))

    return read_json


def catalog_base_lookup(reg: "Registry") -> BaseLookup:
    """An adapter's base as the catalog has it (``registry add`` of an adapter whose base was added first)."""
    def lookup(repo_id: str, revision: str | None) -> RepoView | None:
        with reg.catalog.reader() as session:
            found = catalog_repo(session, repo_id, revision)
        if found is None:
            return None
        listing = found.listing

        def size_of(path: str) -> int | None:
            # a blob gone from the store reads as absent here; the add's store check then names it
            entry = listing.get(path)
            return entry.size if entry is not None and reg.store.has(entry.sha256 or "") else None

        reader = strict_json_reader(lambda p: reg.store.path_for(listing[p].sha256 or "").read_bytes(), size_of,
                                    repo_id)
        return RepoView(repo_id, tuple(listing), reader, found.commit)

    return lookup


@dataclass(frozen=True)
class CatalogRepo:
    """A repo revision already in the catalog, as a listing with full digests."""

    repo_id: str
    commit: str
    source: str
    listing: dict[str, RepoFile]
    locked: dict[str, LockedFile]


def catalog_repo(session: Session, repo_id: str, revision: str | None) -> CatalogRepo | None:
    rev = find_revision(session, repo_id, revision)
    if rev is None:
        return None
    listing: dict[str, RepoFile] = {}
    locked: dict[str, LockedFile] = {}
    for f in rev.files:
        listing[f.path] = RepoFile(f.path, f.size, f.blob_sha256, f.git_oid, f.lfs)
        locked[f.path] = LockedFile(f.path, f.size, f.blob_sha256, f.blob.blake3, f.git_oid, f.lfs)
    return CatalogRepo(repo_id, rev.commit_sha, rev.source, listing, locked)


def missing_repo_selection(component: ComponentSpec, why: str) -> Selection:
    label = component.repo + (f"@{component.revision}" if component.revision else "")
    return Selection(component, (), (f"{component.role}: {label} ({why})",) if component.required else ())
