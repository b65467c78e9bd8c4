"""Choosing a model's manifest, and resolving components that live in other repos from the catalog."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.orm import Session

from registry.catalog.queries import find_revision
from registry.config import Settings
from registry.manifest.infer import ReadJson, infer_manifest
from registry.manifest.resolve import LockedFile, RepoFile, Selection
from registry.manifest.schema import ComponentSpec, Manifest, curated_manifest_path, load_manifest_file


def choose_manifest(settings: Settings, name: str, manifest_file: Path | None, paths: Sequence[str],
                    read_json: ReadJson) -> Manifest:
    """An explicit ``--manifest`` file, else the curated one for ``name``, else one inferred from the files."""
    if manifest_file is not None:
        manifest = load_manifest_file(Path(manifest_file))
    elif (curated := curated_manifest_path(settings.manifests_dir, name)) is not None:
        manifest = load_manifest_file(curated)
    else:
        return infer_manifest(name, paths, read_json)
    if manifest.name != name:
        from registry.errors import ManifestError

        raise ManifestError(
            f"{manifest.source}: name: the manifest is for {manifest.name!r}, not {name!r}",
            details={"file": manifest.source, "key": "name"},
        )
    return manifest


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
