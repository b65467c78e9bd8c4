"""Is a deployed copy still what ``deploy`` wrote? Used by ``audit --verify`` and by ``undeploy``.

Never follows a symlink out of the copy, never changes anything. Content is compared through a stat cache of the
deployed files (``$REGISTRY_HOME/deployed.statcache.sqlite``, keyed by path): a file whose (size, mtime, ctime,
inode) match what was last proven is not hashed again; any other is hashed with blake3 and compared with the
catalog. ``deep`` hashes every file.

- ``dir``: the recorded path is the model's folder; its own repo's files must be there as regular files, and no other
  file (``model.sig`` only when the model is signed).
- ``hf-cache``: the recorded path is the model's snapshot ``ROOT/models--org--name/snapshots/<commit>``; every repo
  of the model (an adapter's base too) must have its snapshot in ROOT, each file a relative link to
  ``../../blobs/<etag>`` (as huggingface_hub writes it) or a regular file (HF_HUB_DISABLE_SYMLINKS), with the
  right bytes, no other file in those snapshots (``model.sig`` only when signed), and each ref deploy wrote
  (``refs/main``, ...) present and naming the deployment's commit (or the commit of another live deployment of that
  repo in the same cache, which a later deploy moved it to).
- Temp files and staging folders of killed deploys (services/deploy.py) are ``leftovers``, never ``extra``.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from registry.hashing import blake3_file
from registry.paths import safe_join
from registry.services.audit_signature import SIGNATURE_FILES
from registry.services.deploy import TEMP_RE, cache_folder_name, cache_leftovers, deployed_stat_cache, dir_leftovers, \
    tree_entries
from registry.services.fleet import Drift
from registry.store.statcache import StatCache, StatKey

MAX_LISTED = 200  # per list, in the catalog and the report; the rest is counted


@dataclass(frozen=True)
class ExpectedFile:
    repo: str
    commit: str
    path: str
    size: int
    sha256: str
    blake3: str
    etag: str   # the HF cache blob name: sha256 for LFS files, git blob sha1 otherwise
    own: bool   # a file of the model's own repo (the only ones a `dir` copy holds)


@dataclass(frozen=True)
class CopyCheck:
    state: str  # ok | drifted | missing
    drift: Drift
    files_checked: int
    files_hashed: int
    bytes_hashed: int
    ours: tuple[str, ...]  # absolute paths that hold our bytes unchanged (what undeploy may remove)


__all__ = ["CopyCheck", "ExpectedFile", "check_copy", "deployed_stat_cache"]


class _Checker:
    def __init__(self, cache: StatCache, deep: bool) -> None:
        self.cache, self.deep = cache, deep
        self.checked = self.hashed = self.bytes = 0
        self.changed: list[str] = []
        self.missing: list[str] = []
        self.extra: list[str] = []
        self.leftovers: list[str] = []
        self.ours: list[str] = []
        self.proven: list[tuple[str, StatKey, str]] = []

    def content(self, path: Path, f: ExpectedFile, label: str) -> None:
        """``path`` is a regular file (lstat-checked by the caller)."""
        self.checked += 1
        st = os.lstat(path)
        if st.st_size != f.size:
            self.changed.append(f"{label} (size {st.st_size}, expected {f.size})")
            return
        key = StatKey.of(st)
        if not self.deep and self.cache.get(str(path)) == (key, f.blake3):
            self.ours.append(str(path))
            return
        self.hashed += 1
        self.bytes += st.st_size
        if blake3_file(path) != f.blake3:
            self.changed.append(f"{label} (content differs)")
            return
        self.proven.append((str(path), key, f.blake3))
        self.ours.append(str(path))

    def result(self, target: str | None = None, *, gone: bool = False) -> CopyCheck:
        if self.proven:
            self.cache.record(self.proven)
        lists = [sorted(self.changed), sorted(self.missing), sorted(self.extra), sorted(set(self.leftovers))]
        more = sum(max(0, len(x) - MAX_LISTED) for x in lists)
        changed, missing, extra, leftovers = (tuple(x[:MAX_LISTED]) for x in lists)
        drift = Drift(target, changed, missing, extra, more=more, leftovers=leftovers)
        state = "missing" if gone else "drifted" if (target or any(lists)) else "ok"
        return CopyCheck(state, drift, self.checked, self.hashed, self.bytes, tuple(self.ours))


def _not_a_folder(path: Path) -> str | None:
    """Why ``path`` is not the real folder deploy made there, or None."""
    if path.is_symlink():
        return f"{path} was replaced by a symlink (to {os.readlink(path)}); not following it"
    if path.exists() and not path.is_dir():
        return f"{path} is no longer a folder"
    return None


def _split_temps(present: dict[str, str], root: Path, ck: _Checker) -> None:
    for rel in [r for r in present if TEMP_RE.match(Path(r).name)]:
        del present[rel]
        ck.leftovers.append(str(root / rel))


def check_dir_copy(root: Path, files: Sequence[ExpectedFile], cache: StatCache, *, deep: bool = False,
                   signed: bool = True) -> CopyCheck:
    ck = _Checker(cache, deep)
    if (why := _not_a_folder(root)) is not None:
        return ck.result(why)
    ck.leftovers.extend(str(p) for p in dir_leftovers(root))
    if not root.exists():
        return ck.result(f"{root} is gone", gone=True)
    present = tree_entries(root)
    _split_temps(present, root, ck)
    own = {f.path: f for f in files if f.own}
    for rel, f in sorted(own.items()):
        kind = present.get(rel)
        path = safe_join(root, rel)
        if kind is None:
            ck.missing.append(rel)
        elif kind == "link":
            ck.changed.append(f"{rel} (replaced by a symlink to {os.readlink(path)})")
        elif kind == "other":
            ck.changed.append(f"{rel} (not a regular file)")
        else:
            ck.content(path, f, rel)
    allowed = SIGNATURE_FILES if signed else frozenset()
    ck.extra.extend(rel for rel in present if rel not in own and rel not in allowed)
    return ck.result()


def _check_refs(folder: Path, commit: str, names: Sequence[str], moved: frozenset[str], prefix: str,
                ck: _Checker) -> None:
    for name in names:
        try:
            ref = safe_join(folder / "refs", name)
        except ValueError:
            continue  # deploy writes no file for a ref name that cannot be one
        label = f"{prefix}refs/{name}"
        if not os.path.lexists(ref):
            ck.missing.append(f"{label} (deploy wrote it: it named {commit})")
            continue
        if not stat.S_ISREG(os.lstat(ref).st_mode):
            ck.changed.append(f"{label} (not a regular file)")
            continue
        held = ref.read_bytes()[:200].decode("utf-8", "replace")
        if held != commit and held not in moved:
            ck.changed.append(f"{label} (holds {held.strip()[:64]!r}, not {commit})")


def check_cache_copy(snapshot: Path, files: Sequence[ExpectedFile], cache: StatCache, *,
                     deep: bool = False, signed: bool = True,
                     refs: Mapping[tuple[str, str], Sequence[str]] | None = None,
                     moved: Mapping[str, frozenset[str]] | None = None) -> CopyCheck:
    """``refs``: per (repo, commit), the ref names deploy wrote; ``moved``: per repo, the commits of the other live
    deployments in this cache (a ref a later deploy moved to one of them is not drift)."""
    ck = _Checker(cache, deep)
    root = snapshot.parents[2]
    repos: dict[tuple[str, str], list[ExpectedFile]] = {}
    for f in files:
        repos.setdefault((f.repo, f.commit), []).append(f)
    own_key = next((k for k, fs in repos.items() if any(f.own for f in fs)), None)
    target: str | None = None
    for (repo, commit), wanted in sorted(repos.items(), key=lambda kv: (kv[0] != own_key, kv[0])):
        own = (repo, commit) == own_key
        folder = root / cache_folder_name(repo)
        snap = folder / "snapshots" / commit
        prefix = "" if own else f"{repo}/"
        broken = next((w for p in (folder, folder / "snapshots", snap, folder / "blobs")
                       if (w := _not_a_folder(p)) is not None), None)
        if broken is not None:
            target = target or broken
            continue
        ck.leftovers.extend(str(p) for p in cache_leftovers(folder))
        if not snap.is_dir():
            if own:
                return ck.result(f"{snap} is gone", gone=True)
            ck.missing.extend(f"{prefix}{f.path}" for f in wanted)
            continue
        present = tree_entries(snap)
        _split_temps(present, snap, ck)
        _check_refs(folder, commit, (refs or {}).get((repo, commit), ()), (moved or {}).get(repo, frozenset()),
                    prefix, ck)
        expected = {f.path: f for f in wanted}
        for rel, f in sorted(expected.items()):
            label = prefix + rel
            link = safe_join(snap, rel)
            kind = present.get(rel)
            if kind is None:
                ck.missing.append(label)
            elif kind == "file":
                ck.content(link, f, label)
            elif kind == "other":
                ck.changed.append(f"{label} (not a regular file)")
            else:
                blob = folder / "blobs" / f.etag
                points_to = os.readlink(link)
                if points_to != os.path.relpath(blob, link.parent):
                    ck.changed.append(f"{label} (points to {points_to}, not blobs/{f.etag})")
                elif not os.path.lexists(blob):
                    ck.missing.append(f"{label} (blob {f.etag} missing)")
                elif not stat.S_ISREG(os.lstat(blob).st_mode):
                    ck.changed.append(f"{label} (blob {f.etag} is not a regular file)")
                else:
                    ck.content(blob, f, label)
        allowed = SIGNATURE_FILES if signed else frozenset()
        ck.extra.extend(prefix + rel for rel in present if rel not in expected and rel not in allowed)
    return ck.result(target)


def check_copy(layout: str, path: str, files: Sequence[ExpectedFile], cache: StatCache, *,
               deep: bool = False, signed: bool = True,
               refs: Mapping[tuple[str, str], Sequence[str]] | None = None,
               moved: Mapping[str, frozenset[str]] | None = None) -> CopyCheck:
    """Never raises for what is on disk: an unreadable copy is reported as drifted, with the reason."""
    p = Path(path)
    try:
        if layout == "hf-cache":
            if len(p.parents) < 3:
                return _Checker(cache, deep).result(f"{p} is not an HF cache snapshot path (ROOT/models--*/snapshots/C)")
            return check_cache_copy(p, files, cache, deep=deep, signed=signed, refs=refs, moved=moved)
        return check_dir_copy(p, files, cache, deep=deep, signed=signed)
    except OSError as exc:
        return _Checker(cache, deep).result(f"cannot read {exc.filename or p}: {exc.strerror or exc}")
