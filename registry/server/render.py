"""The Hub's JSON shapes, rendered from the mirror service's results. No Xet fields, ever."""

from __future__ import annotations

from typing import Any

from registry.services.mirror import MirrorDir, MirrorFile, RefView, RevisionView


def _iso(view: RevisionView) -> str:
    return view.last_modified.strftime("%Y-%m-%dT%H:%M:%S.000Z")


def repo_info(view: RevisionView, *, blobs: bool) -> dict[str, Any]:
    siblings = []
    for f in view.files:
        s: dict[str, Any] = {"rfilename": f.path}
        if blobs:
            s["size"] = f.size
            s["blobId"] = f.git_oid
            if f.lfs:
                s["lfs"] = {"sha256": f.sha256, "size": f.size, "pointerSize": f.pointer_size}
        siblings.append(s)
    return {
        "_id": view.repo_id, "id": view.repo_id, "modelId": view.repo_id, "sha": view.commit,
        "lastModified": _iso(view), "createdAt": _iso(view), "private": False, "gated": False,
        "disabled": False, "downloads": 0, "likes": 0, "tags": [], "siblings": siblings,
        "usedStorage": sum(f.size for f in view.files),
    }


def tree_entry(entry: MirrorFile | MirrorDir) -> dict[str, Any]:
    if isinstance(entry, MirrorDir):
        return {"type": "directory", "oid": entry.oid, "path": entry.path}
    out: dict[str, Any] = {"type": "file", "oid": entry.git_oid, "size": entry.size, "path": entry.path}
    if entry.lfs:
        out["lfs"] = {"oid": entry.sha256, "size": entry.size, "pointerSize": entry.pointer_size}
    return out


def refs(views: tuple[RefView, ...], *, include_prs: bool) -> dict[str, Any]:
    branches, prs = [], []
    for r in views:
        if r.name.startswith("refs/pr/"):
            prs.append({"name": r.name, "ref": r.name, "targetCommit": r.commit})
        else:
            branches.append({"name": r.name, "ref": f"refs/heads/{r.name}", "targetCommit": r.commit})
    out: dict[str, Any] = {"branches": branches, "tags": [], "converts": []}
    if include_prs:
        out["pullRequests"] = prs
    return out
