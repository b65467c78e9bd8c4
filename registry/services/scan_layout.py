"""Reading what sits on a node's disk without trusting it: an HF cache (``hf download``, ``snapshot_download``,
transformers) or a folder of model folders (made by hand, ``save_pretrained``, ``hf download --local-dir``).

Nothing is followed out of the folder being read and nothing is changed. Each oddity becomes a ``ScanProblem``
(never an exception): broken snapshot links, links that leave the cache, stray ``.incomplete`` downloads, refs
that point at missing snapshots, blobs whose names do not match their bytes (when hashing), unreadable folders.

Identity of a file: in an HF cache the blob's name is its etag (sha256 for LFS files, git blob sha1 otherwise),
which is trusted unless ``hash_bytes`` (then every blob is hashed and its name checked); plain folders carry no
names, so their files are always hashed. Hashes go through a stat cache keyed by path
(``$REGISTRY_HOME/scan.statcache.sqlite``), so a second scan of unchanged files hashes nothing.
"""

from __future__ import annotations

import json
import os
import re
import stat
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from registry.hashing import SHA1_RE, SHA256_RE, hash_file
from registry.store.statcache import StatCache, StatKey

INCOMPLETE_SUFFIX = ".incomplete"
MODEL_MARKERS = ("config.json", "adapter_config.json", "modules.json", "model_index.json", "model.safetensors",
                 "model.safetensors.index.json", "pytorch_model.bin", "adapter_model.safetensors")
MAX_DEPTH = 3      # root/org/name/ is as deep as model folders are looked for
MAX_JSON = 4 * 1024 * 1024
SKIPPED = {".git", ".cache", "__pycache__", ".ipynb_checkpoints", ".no_exist", ".locks"}


@dataclass(frozen=True)
class ScanProblem:
    path: str
    problem: str


@dataclass
class FoundFile:
    path: str              # repo-relative
    size: int
    real: str              # the file holding the bytes (a blob, or the file itself)
    etag: str | None = None     # the name an HF cache gave it
    sha256: str | None = None   # trusted from a 64-hex etag, or computed
    git_sha1: str | None = None


@dataclass
class FoundSnapshot:
    kind: str                   # hf-cache | folder
    path: Path
    repo_id: str | None
    commit: str | None
    files: dict[str, FoundFile] = field(default_factory=dict)
    broken: list[str] = field(default_factory=list)  # paths whose bytes are not there (broken links)

    def read_json(self, rel: str) -> Any:
        f = self.files.get(rel)
        if f is None or f.size > MAX_JSON:
            return None
        try:
            with open(f.real, encoding="utf-8") as fh:
                return json.loads(fh.read())
        except (OSError, UnicodeDecodeError, ValueError):
            return None


def repo_id_from_cache_name(name: str) -> str | None:
    """``models--org--name`` -> ``org/name``; ``models--gpt2`` -> ``gpt2``; anything else -> None."""
    if not name.startswith("models--"):
        return None
    rest = name[len("models--"):]
    ns, sep, repo = rest.partition("--")
    if not ns or (sep and not repo) or "--" in repo:
        return None
    return f"{ns}/{repo}" if sep else ns


class Hasher:
    """sha256 and git sha1 of files, through a stat cache (value: "<sha256> <git sha1 or ->")."""

    def __init__(self, cache: StatCache, *, deep: bool) -> None:
        self.cache, self.deep = cache, deep
        self.files = self.bytes = 0
        self._pending: list[tuple[str, StatKey, str]] = []

    def digests(self, path: str) -> tuple[str, str | None]:
        st = os.stat(path)
        key = StatKey.of(st)
        hit = None if self.deep else self.cache.get(path)
        if hit is not None and hit[0] == key:
            sha, _, git = hit[1].partition(" ")
            return sha, (git if git != "-" else None)
        d = hash_file(path)
        self.files += 1
        self.bytes += d.size
        self._pending.append((path, key, f"{d.sha256} {d.git_sha1 or '-'}"))
        return d.sha256, d.git_sha1

    def flush(self) -> None:
        self.cache.record(self._pending)
        self._pending = []


_BAD_NAME = re.compile(r"[\x00-\x1f\x7f\\\\]")


def _walk(root: Path, problems: list[ScanProblem]) -> Iterator[tuple[str, str, str]]:
    """(repo-relative path, full path, kind: file | link | other) of every entry below ``root`` that is not a
    folder; symlinked folders are reported, not followed. os.scandir, not pathlib: a cache has 100 000s of links."""
    stack = [(str(root), "")]
    while stack:
        here, rel_dir = stack.pop()
        try:
            entries = sorted(os.scandir(here), key=lambda e: e.name)
        except OSError as exc:
            problems.append(ScanProblem(here, f"cannot read: {exc.strerror or exc}"))
            continue
        subdirs = []
        for entry in entries:
            rel = f"{rel_dir}/{entry.name}" if rel_dir else entry.name
            if entry.is_symlink():
                kind = "link"  # where it points (a blob, a folder, nowhere) is the caller's to judge
            elif entry.is_dir():
                if entry.name in SKIPPED:
                    continue
                if _BAD_NAME.search(entry.name):
                    problems.append(ScanProblem(entry.path, "unusable folder name; skipped"))
                    continue
                subdirs.append((entry.path, rel))
                continue
            else:
                kind = "file" if entry.is_file() else "other"
            if _BAD_NAME.search(entry.name):  # the folders above it were checked on the way down
                problems.append(ScanProblem(entry.path, "unusable file name; skipped"))
                continue
            yield rel, entry.path, kind
        stack.extend(reversed(subdirs))


# ---- HF caches --------------------------------------------------------------------------------------

def cache_repo_folders(root: Path) -> list[Path] | None:
    """The ``models--*`` folders when ``root`` is an HF cache (or HF_HOME, or one repo folder); else None."""
    if repo_id_from_cache_name(root.name) and (root / "snapshots").is_dir():
        return [root]
    for base in (root, root / "hub"):
        if base.is_dir():
            found = sorted(p for p in base.iterdir() if p.name.startswith("models--") and p.is_dir())
            if found:
                return found
    return None


def read_cache_repo(folder: Path, hasher: Hasher, *, hash_bytes: bool,
                    problems: list[ScanProblem]) -> list[FoundSnapshot]:
    repo_id = repo_id_from_cache_name(folder.name)
    if folder.is_symlink():
        problems.append(ScanProblem(str(folder), f"a symlink (to {os.readlink(folder)}); not followed"))
        return []
    if repo_id is None:
        problems.append(ScanProblem(str(folder), "not a models--ORG--NAME folder name; skipped"))
        return []
    blobs_dir = str(folder / "blobs")
    if os.path.isdir(blobs_dir) and not os.path.islink(blobs_dir):
        for entry in sorted(os.scandir(blobs_dir), key=lambda e: e.name):
            if entry.name.endswith(INCOMPLETE_SUFFIX):
                problems.append(ScanProblem(entry.path, f"a partial download ({_size(entry.path)} bytes) that never "
                                            "finished; `hf cache prune` or delete it"))
            elif not (SHA256_RE.match(entry.name) or SHA1_RE.match(entry.name)):
                problems.append(ScanProblem(entry.path, "not a blob name (a sha256 or a git sha1); left alone"))
    snaps_dir = folder / "snapshots"
    found: list[FoundSnapshot] = []
    snap_names = sorted(p.name for p in snaps_dir.iterdir()) if snaps_dir.is_dir() else []
    for name in snap_names:
        snap_path = snaps_dir / name
        if snap_path.is_symlink() or not snap_path.is_dir():
            problems.append(ScanProblem(str(snap_path), "a snapshot that is not a folder; skipped"))
            continue
        if not SHA1_RE.match(name):
            problems.append(ScanProblem(str(snap_path), "a snapshot folder whose name is not a commit"))
        snap = FoundSnapshot("hf-cache", snap_path, repo_id, name if SHA1_RE.match(name) else None)
        for rel, p, kind in _walk(snap_path, problems):
            if kind == "link":
                _cache_link(snap, rel, p, blobs_dir, problems)
            elif kind == "file":
                sha, git = hasher.digests(p)  # HF_HUB_DISABLE_SYMLINKS copies, or a file put there by hand
                snap.files[rel] = FoundFile(rel, os.stat(p).st_size, p, None, sha, git)
            else:
                problems.append(ScanProblem(p, "not a regular file; skipped"))
        found.append(snap)
    if hash_bytes:
        _check_blob_names(found, hasher, problems)
    _check_refs(folder, set(snap_names), problems)
    return found


def _cache_link(snap: FoundSnapshot, rel: str, link: str, blobs_dir: str, problems: list[ScanProblem]) -> None:
    target = os.readlink(link)
    # huggingface_hub writes "../" * depth + "blobs/<etag>": recognised without path arithmetic (100 000s of links)
    prefix = "../" * (rel.count("/") + 2) + "blobs/"
    etag = target[len(prefix):] if target.startswith(prefix) else ""
    if etag and "/" not in etag and etag not in (".", ".."):
        resolved = f"{blobs_dir}/{etag}"
    else:
        resolved = os.path.normpath(os.path.join(os.path.dirname(link), target))
        etag = os.path.basename(resolved)
        if os.path.dirname(resolved) != blobs_dir:
            problems.append(ScanProblem(link, f"links to {target}, outside this repo's blobs/; not followed"))
            snap.broken.append(rel)
            return
    try:
        st = os.lstat(resolved)
    except FileNotFoundError:
        problems.append(ScanProblem(link, f"a broken symlink: blob {os.path.basename(resolved)} is missing"))
        snap.broken.append(rel)
        return
    if not stat.S_ISREG(st.st_mode):
        problems.append(ScanProblem(resolved, "a blob that is not a regular file; not followed"))
        snap.broken.append(rel)
        return
    lfs = len(etag) == 64 and SHA256_RE.match(etag) is not None
    snap.files[rel] = FoundFile(rel, st.st_size, resolved, etag, etag if lfs else None,
                                etag if not lfs and SHA1_RE.match(etag) else None)


def _check_blob_names(found: list[FoundSnapshot], hasher: Hasher, problems: list[ScanProblem]) -> None:
    checked: dict[str, tuple[str, str | None]] = {}
    for snap in found:
        for f in snap.files.values():
            if f.etag is None:
                continue
            if f.real not in checked:
                checked[f.real] = hasher.digests(f.real)
                sha, git = checked[f.real]
                expected = sha if SHA256_RE.match(f.etag) else git
                if expected != f.etag:
                    what = f"sha256 {sha}" if SHA256_RE.match(f.etag) else f"git sha1 {git or '(not computed)'}"
                    problems.append(ScanProblem(f.real, f"the blob's name does not match its content ({what})"))
            f.sha256, f.git_sha1 = checked[f.real]


def _check_refs(folder: Path, snapshots: set[str], problems: list[ScanProblem]) -> None:
    refs = folder / "refs"
    if not refs.is_dir():
        return
    for dirpath, _dirs, filenames in os.walk(refs, followlinks=False):
        for name in filenames:
            ref = Path(dirpath) / name
            try:
                commit = ref.read_text(encoding="ascii", errors="replace").strip()
            except OSError as exc:
                problems.append(ScanProblem(str(ref), f"cannot read: {exc}"))
                continue
            label = ref.relative_to(refs).as_posix()
            if not SHA1_RE.match(commit):
                problems.append(ScanProblem(str(ref), f"refs/{label} does not hold a commit ({commit[:60]!r})"))
            elif commit not in snapshots:
                problems.append(ScanProblem(str(ref), f"refs/{label} points at {commit}, whose snapshot is missing"))


def _size(p: str) -> int:
    try:
        return os.lstat(p).st_size
    except OSError:
        return 0


# ---- plain folders ----------------------------------------------------------------------------------

def _is_model_folder(folder: Path) -> bool:
    return any((folder / m).exists() for m in MODEL_MARKERS) or any(folder.glob("*.safetensors"))


def model_folders(root: Path, problems: list[ScanProblem]) -> list[Path]:
    """``root`` itself if it is a model folder, else the model folders up to MAX_DEPTH below it."""
    out: list[Path] = []

    def visit(folder: Path, depth: int) -> None:
        if _is_model_folder(folder):
            out.append(folder)
            return
        if depth >= MAX_DEPTH:
            return
        try:
            children = sorted(p for p in folder.iterdir() if p.name not in SKIPPED and not p.name.startswith("."))
        except OSError as exc:
            problems.append(ScanProblem(str(folder), f"cannot read: {exc.strerror or exc}"))
            return
        for child in children:
            if child.is_symlink() and child.is_dir():
                problems.append(ScanProblem(str(child), f"a symlinked folder (to {os.readlink(child)}); not followed"))
            elif child.is_dir():
                visit(child, depth + 1)

    visit(root, 0)
    return out


def _local_dir_commit(folder: Path) -> str | None:
    """``hf download --local-dir`` leaves ``.cache/huggingface/download/<file>.metadata``: commit on line 1."""
    meta = folder / ".cache" / "huggingface" / "download"
    if not meta.is_dir():
        return None
    for p in sorted(meta.rglob("*.metadata"))[:1]:
        try:
            first = p.read_text(encoding="ascii", errors="replace").splitlines()[:1]
        except OSError:
            return None
        if first and SHA1_RE.match(first[0].strip()):
            return first[0].strip()
    return None


def read_model_folder(folder: Path, root: Path, hasher: Hasher, problems: list[ScanProblem]) -> FoundSnapshot:
    rel_name = folder.relative_to(root).as_posix() if folder != root else folder.name
    snap = FoundSnapshot("folder", folder, rel_name if rel_name.count("/") == 1 else None, _local_dir_commit(folder))
    inside = folder.resolve()
    for rel, p, kind in _walk(folder, problems):
        if kind == "link":
            resolved = Path(os.path.realpath(p))
            if not resolved.is_relative_to(inside):
                problems.append(ScanProblem(p, f"a symlink to {os.readlink(p)}, outside the folder; not followed"))
                snap.broken.append(rel)
                continue
            if resolved.is_dir():
                problems.append(ScanProblem(p, f"a symlinked folder (to {os.readlink(p)}); not followed"))
                continue
            if not resolved.is_file():
                problems.append(ScanProblem(p, f"a broken symlink (to {os.readlink(p)})"))
                snap.broken.append(rel)
                continue
            p = str(resolved)
        elif kind != "file":
            problems.append(ScanProblem(p, "not a regular file; skipped"))
            continue
        if p.endswith(INCOMPLETE_SUFFIX):
            problems.append(ScanProblem(p, "a partial download that never finished"))
            continue
        try:
            sha, git = hasher.digests(p)
            size = os.stat(p).st_size
        except OSError as exc:
            problems.append(ScanProblem(p, f"cannot read: {exc.strerror or exc}"))
            continue
        snap.files[rel] = FoundFile(rel, size, p, None, sha, git)
    return snap
