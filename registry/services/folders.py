"""Reading a local model folder safely: a plain HF-style folder or a snapshot of an HF cache."""

from __future__ import annotations

import errno
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from registry.errors import InvalidPath
from registry.hashing import SHA1_RE
from registry.manifest.jsonread import expected_type, parse_json
from registry.paths import check_relative_path, ref_problem

# Folders that are never part of a model: git metadata and huggingface_hub's local_dir bookkeeping.
SKIPPED_DIRS = {".git", ".cache", "__pycache__", ".ipynb_checkpoints"}
MAX_JSON = 50 * 1024 * 1024


@dataclass(frozen=True)
class Folder:
    root: Path
    files: dict[str, Path]          # repo-relative path -> real file to read
    snapshot_commit: str | None     # the commit when the folder is an HF cache snapshot
    snapshot_refs: tuple[str, ...] = ()  # the cache's refs/ names that point at that commit
    # files hard-linked to names outside the folder: repo-relative path -> (links in all, links outside)
    outside_links: dict[str, tuple[int, int]] = field(default_factory=dict)

    def refuse_outside_link(self, rel: str) -> None:
        """A hard link out of the folder is refused as a symlink out of it is (the caller decides which files
        count: add accepts one whose other link is this store's own blob of the same bytes)."""
        nlink, outside = self.outside_links[rel]
        full = self.root / rel
        raise InvalidPath(
            f"{full}: a hard link whose other links ({outside} of {nlink}) lie outside the model folder; refusing "
            "to import it, as a symlink out of the folder is refused (nothing was recorded). Copy the file into "
            "the folder (cp, not ln) if its bytes belong to this model",
            details={"path": rel, "links": nlink, "outside": outside})

    def read_json(self, rel: str) -> Any:
        path = self.files.get(rel)
        if path is None:
            return None
        if path.stat().st_size > MAX_JSON:
            raise InvalidPath(f"{self.root / rel}: {path.stat().st_size} bytes is too large for a JSON config")
        # strict: Infinity, 100 000 levels, 5 000-digit integers and non-UTF-8 are refused naming file and key
        return parse_json(path.read_bytes(), rel, expect=expected_type(rel))


def scan_folder(path: Path | str) -> Folder:
    root = Path(path).expanduser()
    if not root.exists():
        raise InvalidPath(f"{root}: no such folder", details={"path": str(root)})
    if not root.is_dir():
        raise InvalidPath(f"{root}: not a folder; `registry add` takes a model folder", details={"path": str(root)})
    root = _cache_repo_snapshot(root.resolve())
    snapshot_commit = None
    allowed_root = root
    if root.parent.name == "snapshots" and SHA1_RE.match(root.name):
        # HF cache snapshot: files are links into ../../blobs of the same models--org--name folder.
        snapshot_commit = root.name
        allowed_root = root.parent.parent
    files: dict[str, Path] = {}
    linked: dict[tuple[int, int], tuple[str, int]] = {}  # (dev, inode) -> (the file, st_nlink) of hard-linked files
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        here = Path(dirpath)
        rel_dir = here.relative_to(root).as_posix()
        keep = []
        for d in dirnames:
            full = here / d
            if full.is_symlink():
                raise InvalidPath(f"{full}: a symlinked folder; copy it in or add its target instead",
                                  details={"path": str(full)})
            if rel_dir == "." and d in SKIPPED_DIRS or d in {"__pycache__", ".ipynb_checkpoints"}:
                continue
            keep.append(d)
        dirnames[:] = sorted(keep)
        for name in sorted(filenames):
            full = here / name
            rel = name if rel_dir == "." else f"{rel_dir}/{name}"
            try:
                check_relative_path(rel)
            except ValueError as exc:  # the message must print on any terminal: no raw surrogates in it
                shown = os.fsencode(full).decode("utf-8", "backslashreplace")
                raise InvalidPath(f"{shown}: unusable file name: {exc}",
                                  details={"path": os.fsencode(rel).decode("utf-8", "backslashreplace")}) from None
            target = full
            if full.is_symlink():
                try:
                    target = full.resolve(strict=True)
                except RuntimeError as exc:  # Python 3.11's "Symlink loop from ..."
                    raise InvalidPath(f"{full}: a symlink loop ({exc}); remove the link or point it at a file",
                                      details={"path": rel}) from None
                except OSError as exc:
                    if exc.errno == errno.ELOOP:
                        raise InvalidPath(f"{full}: a symlink loop; remove the link or point it at a file",
                                          details={"path": rel}) from None
                    raise InvalidPath(f"{full}: broken symlink ({exc.strerror})", details={"path": rel}) from None
                if not target.is_relative_to(allowed_root):
                    raise InvalidPath(
                        f"{full}: symlink points outside the model folder (to {target}); refusing to import it",
                        details={"path": rel, "target": str(target)},
                    )
            try:
                st = target.stat()
            except FileNotFoundError as exc:
                raise InvalidPath(f"{full}: broken symlink", details={"path": rel}) from exc
            except OSError as exc:
                raise InvalidPath(f"{full}: cannot read it: {exc.strerror}", details={"path": rel}) from None
            if not stat.S_ISREG(st.st_mode):
                raise InvalidPath(f"{full}: not a regular file", details={"path": rel})
            files[rel] = target
            if st.st_nlink > 1:
                linked[(st.st_dev, st.st_ino)] = (rel, st.st_nlink)
    if not files:
        raise InvalidPath(f"{root}: the folder is empty; is this a model folder?", details={"path": str(root)})
    outside = _outside_links(allowed_root, linked) if linked else {}
    refs = _snapshot_refs(allowed_root, snapshot_commit) if snapshot_commit else ()
    return Folder(root=root, files=files, snapshot_commit=snapshot_commit, snapshot_refs=refs,
                  outside_links=outside)


def _outside_links(allowed_root: Path, linked: dict[tuple[int, int], tuple[str, int]]) -> dict[str, tuple[int, int]]:
    """Hard-linked files whose links are not all inside the folder: their bytes are another file's, somewhere
    else. Links inside (an HF cache's snapshot and its ../../blobs included) are counted over the whole folder,
    hidden folders too; two names of one inode both inside are fine."""
    seen = {key: 0 for key in linked}
    for dirpath, _dirnames, filenames in os.walk(allowed_root, followlinks=False):
        for name in filenames:
            try:
                st = os.lstat(os.path.join(dirpath, name))
            except OSError:
                continue
            key = (st.st_dev, st.st_ino)
            if key in seen:
                seen[key] += 1
    return {rel: (nlink, nlink - seen[key]) for key, (rel, nlink) in linked.items() if seen[key] < nlink}


def _cache_repo_snapshot(root: Path) -> Path:
    """``models--org--name`` of an HF cache stands for the snapshot its ``refs/main`` points at."""
    if not ((root / "snapshots").is_dir() and (root / "blobs").is_dir()):
        return root
    main = root / "refs" / "main"
    commit = main.read_text(encoding="ascii", errors="replace").strip() if main.is_file() else ""
    if SHA1_RE.match(commit) and (root / "snapshots" / commit).is_dir():
        return root / "snapshots" / commit
    snaps = sorted(p.name for p in (root / "snapshots").iterdir())
    raise InvalidPath(f"{root} is an HF cache repo folder without a usable refs/main; pass one of its snapshots: "
                      + (", ".join(f"{root}/snapshots/{s}" for s in snaps) or "(none)"), details={"path": str(root)})


def _snapshot_refs(repo_dir: Path, commit: str) -> tuple[str, ...]:
    """``refs/main`` (or ``refs/refs/pr/1``) files holding ``commit``: the ref names the cache knows it by."""
    refs_dir = repo_dir / "refs"
    names = []
    for ref in sorted(refs_dir.rglob("*")) if refs_dir.is_dir() else ():
        try:
            if ref.is_file() and not ref.is_symlink() and ref.read_text(encoding="ascii").strip() == commit:
                name = ref.relative_to(refs_dir).as_posix()
                if ref_problem(name) is None:  # a cache file named like no ref (`a..b`, `x.lock`) is no label
                    names.append(name)
        except (OSError, UnicodeDecodeError):
            continue  # an unreadable ref only loses a label
    return tuple(names)
