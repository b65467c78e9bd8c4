"""A model's files as the libraries expect them: one folder per repo, named after the repo
(``org--name``: Visualized BGE picks its architecture from that name), holding symlinks into the
store. No weight is copied; the blobs are read-only, so no library can change them through a link.

Layout: ``<root>/<root digest>/<org>--<name>/<path>``. Built in a temp folder and renamed into place,
so a reader sees a complete folder or none; an existing one is reused when every link still points at
its blob.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Callable
from pathlib import Path

from registry.manifest.resolve import ResolvedManifest
from registry.paths import safe_join


def repo_folder_name(repo_id: str) -> str:
    return repo_id.replace("/", "--")


def _links(resolved: ResolvedManifest, blob_path: Callable[[str], Path]) -> dict[tuple[str, str], Path]:
    links: dict[tuple[str, str], Path] = {}
    for comp in resolved.components:
        for f in comp.files:
            links[(comp.repo, f.path)] = blob_path(f.sha256)
    return links


def _complete(folder: Path, links: dict[tuple[str, str], Path]) -> bool:
    for (repo, path), target in links.items():
        link = folder / repo_folder_name(repo) / path
        if not link.is_symlink() or Path(os.readlink(link)) != target:
            return False
    return True


def materialize(resolved: ResolvedManifest, blob_path: Callable[[str], Path], root: Path) -> dict[str, Path]:
    """Folders of links for ``resolved``; returns repo id -> folder."""
    links = _links(resolved, blob_path)
    final = Path(root) / resolved.root_digest
    repos = {repo for repo, _ in links}
    result = {repo: final / repo_folder_name(repo) for repo in repos}
    if final.is_dir() and _complete(final, links):
        return result
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    tmp = root / f".tmp-{uuid.uuid4().hex}"
    try:
        for (repo, path), target in sorted(links.items()):
            link = safe_join(tmp / repo_folder_name(repo), path)
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to(target)
        if final.exists():
            # a stale or half-made folder from an older run: move it aside, then take its place
            stale = root / f".stale-{uuid.uuid4().hex}"
            os.replace(final, stale)
            shutil.rmtree(stale, ignore_errors=True)
        try:
            os.replace(tmp, final)
        except OSError:
            if not (final.is_dir() and _complete(final, links)):  # a concurrent loader made it first
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return result
