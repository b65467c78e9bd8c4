"""``registry deploy NAME --target DIR``: put a registered model on a node, and record where it went.

Layouts:
- ``hf-cache``: ``DIR/models--org--name/{blobs,snapshots,refs}`` exactly as huggingface_hub writes it (blobs named
  by etag: sha256 for LFS files, git sha1 otherwise; relative symlinks from the snapshot), one such folder per repo
  the model needs (an adapter's base too), so ``HF_HUB_OFFLINE=1 HF_HUB_CACHE=DIR`` loads it by name.
- ``dir``: a plain folder holding the model's own repo files.

Never partial: blobs are written under a temp name and renamed; a new snapshot or folder is assembled aside and
renamed into place in one step. Hard links from the store when it is on the same filesystem, copies otherwise.
Every store blob is checked (through the store's stat cache) before it is linked or copied: a rotten blob is never
spread to a node.

Re-runs and repairs (docs/reliability.md, "Deployments: damage, repair and re-runs"):
- Leftovers: every temp name this module writes is ``.<name>.registry-<8 hex>.{incomplete,link,tmp}`` (and staging
  folders ``.registry-staging-<8 hex>`` / ``.<target>.registry-staging-<8 hex>``). While it writes, a deploy holds a
  shared ``flock`` on the folder it writes into (the ``models--*`` folder of an HF cache, the parent of a ``dir``
  target); a deploy that can take that lock exclusively knows no writer is left there (the kernel drops a killed
  process's locks) and removes the leftovers first. ``audit --verify`` reports any that remain.
- ``dir``: a non-empty target that holds exactly the model's files (each one's size and digest, no other file but the
  model's own ``model.sig``) is the copy of a deploy killed before it recorded it, and is recorded as it is; any other
  non-empty target is refused (exit 9).
- A target the registry wrote and recorded (a live deployment of this very revision at this path on this node) is
  repaired by a re-deploy: files whose bytes differ are replaced, files that are not the model's are removed, links,
  refs and ``model.sig`` rewritten; each repair is listed in the result and in the ``deploy`` event.
``audit`` (services/audit.py) compares what the catalog says is deployed with what is on disk and with what is
registered now; ``undeploy`` (services/undeploy.py) removes a copy this module wrote.
"""

from __future__ import annotations

import datetime as dt
import errno
import fcntl
import os
import re
import shutil
import stat
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select

from registry.catalog import states
from registry.catalog.models import LAYOUTS, Deployment, Ref
from registry.catalog.queries import find_model
from registry.errors import ConflictError, IntegrityError, StorageError, UsageError
from registry.hashing import CHUNK, blake3_file, git_blob_sha1
from registry.killpoints import killpoint
from registry.paths import safe_join
from registry.services.context import Registry
from registry.services.trust import deploy_signatures
from registry.signing.oms import SIGNATURE_FILE
from registry.store import ExpectedBlob, check_blobs
from registry.store.statcache import StatCache, StatKey

# Temp names deploy writes (the unmarked ``.<name>.<8 hex>.<suffix>`` of earlier versions is recognised too)
TEMP_RE = re.compile(r"^\..+\.(?:registry-)?[0-9a-f]{8}\.(?:incomplete|link|tmp)$")
CACHE_STAGING_RE = re.compile(r"^\.registry-staging-[0-9a-f]{8}$")


def _dir_staging_re(name: str) -> re.Pattern[str]:
    return re.compile(r"^\." + re.escape(name) + r"\.registry-staging-[0-9a-f]{8}$")


def _tmp_name(dest: Path, suffix: str) -> Path:
    return dest.with_name(f".{dest.name}.registry-{uuid.uuid4().hex[:8]}.{suffix}")


def deployed_stat_cache(home: Path) -> StatCache:
    """(size, mtime, ctime, inode, blake3) of deployed files as last proven, keyed by path (audit, deploy)."""
    return StatCache(home / "deployed.statcache.sqlite")


@dataclass(frozen=True)
class PlannedFile:
    path: str
    size: int
    sha256: str
    blake3: str
    etag: str


@dataclass(frozen=True)
class PlannedRepo:
    repo_id: str
    commit: str
    refs: tuple[str, ...]
    files: tuple[PlannedFile, ...]
    signature: bytes | None = None  # the model.sig written beside the files (it lists exactly them)


@dataclass(frozen=True)
class DeployedRepo:
    repo_id: str
    commit: str
    path: str
    files: int
    bytes: int
    linked: int
    copied: int
    reused: int


@dataclass(frozen=True)
class DeployResult:
    deployment_id: int
    name: str
    commit: str
    root_digest: str
    layout: str
    node: str
    actor: str
    target: str
    path: str
    repos: tuple[DeployedRepo, ...]
    not_included: tuple[str, ...]  # repos a `dir` deployment leaves out (deploy them too, or use hf-cache)
    signed: tuple[str, ...] = ()   # repo@commit of each folder that got a model.sig
    cleaned: tuple[str, ...] = ()  # leftovers of killed deploys removed first (paths)
    repaired: tuple[str, ...] = ()  # what a re-deploy over a recorded copy fixed ("replaced X", "removed Y", ...)
    adopted: bool = False          # a complete unrecorded `dir` copy (a deploy killed before it recorded) recorded


def cache_folder_name(repo_id: str) -> str:
    return "models--" + repo_id.replace("/", "--")


@dataclass(frozen=True)
class _Chosen:
    model_id: int
    name: str
    commit: str
    root_digest: str


def _plan(reg: Registry, spec: str, as_base: bool = False, accept: tuple[str, ...] = states.SERVED
          ) -> tuple[_Chosen, list[PlannedRepo]]:
    from registry.services.load import refuse_base

    with reg.catalog.reader() as session:
        model = find_model(session, spec)
        label = f"{model.name}@{model.revision.commit_sha[:12]}"
        if model.manifest.get("base_only") and not as_base:  # first: it says more than "not registered"
            raise refuse_base(reg, model.name, model.revision.commit_sha, "deploy")
        if model.state not in accept:
            why = f" ({model.state_reason})" if model.state_reason else ""
            raise ConflictError(
                f"{label} is {model.state}{why}; only registered models are deployed: run `registry register` first"
                if model.state != states.QUARANTINED else
                f"{label} is quarantined{why}; quarantined models are never deployed. To lift it: "
                + states.lifted_by(model.state_reason, model.name),
                details={"name": model.name, "state": model.state},
            )
        repos: dict[tuple[str, str], dict[str, PlannedFile]] = {}
        refs: dict[tuple[str, str], tuple[str, ...]] = {}
        for comp in model.components:
            rev = comp.revision
            key = (rev.repo.repo_id, rev.commit_sha)
            files = repos.setdefault(key, {})
            for f in comp.files:
                files[f.path] = PlannedFile(f.path, f.size, f.blob_sha256, f.blob.blake3,
                                            f.blob_sha256 if f.lfs else f.git_oid)
            if key not in refs:
                names = dict(session.execute(select(Ref.name, Ref.revision_id).where(Ref.repo_id == rev.repo_id)).all())
                here = tuple(sorted(n for n, r in names.items() if r == rev.id))
                refs[key] = here if "main" in names else tuple(sorted({*here, "main"}))
        own = (model.name, model.revision.commit_sha)
        order = [k for k in repos if k != own] + ([own] if own in repos else [])
        signatures = deploy_signatures(reg, session, model)  # refuses an untrusted model under a trust policy
        planned = [PlannedRepo(k[0], k[1], refs[k], tuple(sorted(repos[k].values(), key=lambda p: p.path)),
                               signatures.get(k)) for k in order]
        chosen = _Chosen(model.id, model.name, model.revision.commit_sha, model.root_digest)
    users: dict[str, str] = {}
    for repo in planned:
        for f in repo.files:
            users.setdefault(f.sha256, f"{repo.repo_id}: {f.path}")
            if not reg.store.has(f.sha256):
                raise StorageError(f"{repo.repo_id}: {f.path}: blob {f.sha256} is not in the store; "
                                   "run `registry verify` (nothing was deployed)", details={"path": f.path})
    # never spread rotten bytes: each blob through the store's stat cache (hashed only when its stat moved)
    wanted = {f.sha256: ExpectedBlob(f.sha256, f.size, f.blake3) for r in planned for f in r.files}
    for check in check_blobs(reg.store, reg.stat_cache, list(wanted.values()), deep=False):
        if check.status != "ok":
            raise IntegrityError(
                f"{users[check.sha256]}: blob {check.sha256} in the store is {check.status} ({check.reason}); "
                f"nothing was deployed: run `registry verify` (it quarantines {chosen.name}), then "
                f"{states.lifted_by(states.Cause.BYTES.reason(''), chosen.name)}",
                details={"sha256": check.sha256, "problem": check.status})
    return chosen, planned


# ---- leftovers of killed deploys ----------------------------------------------------------------------------

def _is_real_dir(path: Path) -> bool:
    return path.is_dir() and not path.is_symlink()


def _temps_under(root: Path) -> list[Path]:
    out: list[Path] = []
    if not _is_real_dir(root):
        return out
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        out.extend(Path(dirpath) / n for n in filenames + dirnames if TEMP_RE.match(n))
        dirnames[:] = [d for d in dirnames if not TEMP_RE.match(d)]
    return out


def cache_leftovers(folder: Path) -> list[Path]:
    """What killed deploys left in one ``models--*`` folder of an HF cache: temp blobs, links, refs, staging."""
    if not _is_real_dir(folder):
        return []
    out = [p for p in folder.iterdir() if CACHE_STAGING_RE.match(p.name)]
    blobs = folder / "blobs"
    if _is_real_dir(blobs):
        out.extend(p for p in blobs.iterdir() if TEMP_RE.match(p.name))
    for sub in ("snapshots", "refs"):
        out.extend(_temps_under(folder / sub))
    return sorted(out)


def dir_leftovers(target: Path) -> list[Path]:
    """What killed deploys of a ``dir`` target left: staging folders beside it, temp files in it."""
    out: list[Path] = []
    if _is_real_dir(target.parent):
        pattern = _dir_staging_re(target.name)
        out.extend(p for p in target.parent.iterdir() if pattern.match(p.name))
    out.extend(_temps_under(target))
    return sorted(out)


def _remove_all(paths: Sequence[Path]) -> list[str]:
    done: list[str] = []
    for p in paths:
        try:
            if _is_real_dir(p):
                shutil.rmtree(p)
            else:
                p.unlink()
            done.append(str(p))
        except FileNotFoundError:
            pass
    return done


@contextmanager
def _writing_in(folder: Path, leftovers: Callable[[], list[Path]], cleaned: list[str]) -> Iterator[None]:
    """Hold a shared flock on ``folder`` while writing into it; first, if no other deploy holds it (the exclusive
    lock is free: every writer that left temp files there is gone), remove ``leftovers()``."""
    try:
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    except OSError as exc:
        raise StorageError(f"cannot open {folder}: {exc}") from exc
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            alone = True
        except OSError:  # another deploy writes there now (or the filesystem has no locks): leave it all be
            alone = False
        if alone:
            cleaned.extend(_remove_all(leftovers()))
        try:
            fcntl.flock(fd, fcntl.LOCK_SH)
        except OSError:
            pass
        yield
    finally:
        os.close(fd)


def _copy_file(src: Path, dest: Path) -> None:
    with open(src, "rb") as fin, open(dest, "xb") as fout:
        first = True
        while chunk := fin.read(CHUNK):
            fout.write(chunk)
            if first:
                fout.flush()
                killpoint("deploy:mid-copy")
                first = False


class _Materializer:
    """Link (same filesystem) or copy a store blob to a destination, atomically; keep a destination that already
    holds the bytes (proven by inode, stat cache or hash), replace one that does not."""

    def __init__(self, reg: Registry) -> None:
        self.reg = reg
        self.linked = self.copied = self.reused = 0
        self.recorded = False  # writing into a copy the registry recorded: a missing file is a repair too
        self.replaced: list[str] = []
        self.cache = deployed_stat_cache(reg.settings.home)
        self._proven: list[tuple[str, StatKey, str]] = []

    def holds(self, dest: Path, f: PlannedFile) -> bool:
        """``dest`` is a regular file holding ``f``'s bytes."""
        try:
            st = os.lstat(dest)
        except FileNotFoundError:
            return False
        if not stat.S_ISREG(st.st_mode) or st.st_size != f.size:
            return False
        try:
            src = os.stat(self.reg.store.path_for(f.sha256))
            if (src.st_dev, src.st_ino) == (st.st_dev, st.st_ino):
                return True  # a hard link of the store's blob, which _plan has just proven
        except OSError:
            pass
        key = StatKey.of(st)
        if self.cache.get(str(dest)) == (key, f.blake3):
            return True
        if blake3_file(dest) == f.blake3:
            self._proven.append((str(dest), key, f.blake3))
            return True
        return False

    def flush(self) -> None:
        if self._proven:
            self.cache.record(self._proven)
            self._proven = []

    def put(self, f: PlannedFile, dest: Path, label: str | None = None) -> None:
        if self.holds(dest, f):
            self.reused += 1  # an etag-named blob (or a file) already there holds these bytes
            return
        if os.path.lexists(dest):
            self.replaced.append(f"replaced {label or dest} (its bytes were not the model's)")
            if _is_real_dir(dest):
                shutil.rmtree(dest)
        elif self.recorded and label:
            self.replaced.append(f"restored {label} (it was missing)")
        src = self.reg.store.path_for(f.sha256)
        tmp = _tmp_name(dest, "incomplete")
        try:
            try:
                os.link(src, tmp)
                self.linked += 1
            except OSError as exc:
                if exc.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK, errno.EACCES):
                    raise
                _copy_file(src, tmp)
                self.copied += 1
            killpoint("deploy:before-blob-rename")
            os.replace(tmp, dest)
            # rename() of two links to one inode is a no-op that leaves the source name in place
            # (POSIX): a concurrent deploy that linked the same blob first makes ours exactly that.
            tmp.unlink(missing_ok=True)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            raise StorageError(f"cannot write {dest}: {exc} (nothing partial was left)") from exc


def _symlink_atomic(target: str, link: Path) -> None:
    tmp = _tmp_name(link, "link")
    os.symlink(target, tmp)
    os.replace(tmp, link)


def _write_file(path: Path, data: bytes) -> bool:
    """A small read-only file (model.sig), written aside and renamed; an equal one already there is kept.
    Returns whether something else was there (and was replaced)."""
    if path.is_file() and not path.is_symlink() and path.read_bytes() == data:
        return False
    was = os.path.lexists(path)
    if _is_real_dir(path):
        shutil.rmtree(path)
    tmp = _tmp_name(path, "incomplete")
    try:
        tmp.write_bytes(data)
        tmp.chmod(0o444)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return was


def _write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_name(path, "tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _real_parents(root: Path, rel: str, repaired: list[str], recorded: bool = True) -> Path:
    """``root/rel`` with every folder between made a real folder: a symlink or a file in the way is removed in a
    copy the registry recorded (refused in any other), never written through."""
    dest = safe_join(root, rel)
    root.mkdir(parents=True, exist_ok=True)
    here = root
    for part in Path(rel).parts[:-1]:
        here = here / part
        _own_folder(here, recorded, repaired)
    return dest


def tree_entries(root: Path) -> dict[str, str]:
    """Every entry under ``root`` (not following links): rel path -> file | link | other (deploy's repairs and
    audit's copy check both read a target through this)."""
    out: dict[str, str] = {}
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        here = Path(dirpath)
        rel_dir = here.relative_to(root).as_posix()
        for name in list(dirnames):
            if (here / name).is_symlink():
                out[name if rel_dir == "." else f"{rel_dir}/{name}"] = "link"
                dirnames.remove(name)
        for name in filenames:
            rel = name if rel_dir == "." else f"{rel_dir}/{name}"
            mode = os.lstat(here / name).st_mode
            out[rel] = "file" if stat.S_ISREG(mode) else "link" if stat.S_ISLNK(mode) else "other"
    return out


def _remove_extras(root: Path, wanted: set[str], repaired: list[str]) -> None:
    """In a copy the registry recorded: remove every entry that is not the model's (never following a link)."""
    for rel, _kind in sorted(tree_entries(root).items()):
        if rel in wanted or TEMP_RE.match(Path(rel).name):
            continue
        (root / rel).unlink()
        repaired.append(f"removed {rel} (not a file of the model)")
    for dirpath, _dirs, _files in os.walk(root, topdown=False, followlinks=False):
        if Path(dirpath) != root:
            try:
                os.rmdir(dirpath)  # only empty ones
            except OSError:
                pass


def _link_snapshot(snapshot: Path, files: Sequence[PlannedFile], blobs: Path, repaired: list[str],
                   recorded: bool = True) -> None:
    for f in files:
        link = _real_parents(snapshot, f.path, repaired, recorded)
        target = os.path.relpath(blobs / f.etag, link.parent)
        if not (link.is_symlink() and os.readlink(link) == target):
            if not os.path.lexists(link):
                if recorded and repaired is not None:
                    repaired.append(f"restored the link {f.path} (it was missing)")
            else:
                repaired.append(f"relinked {f.path} (it was {'a link to ' + os.readlink(link) if link.is_symlink() else 'not the link'})")
                if _is_real_dir(link):
                    shutil.rmtree(link)
            _symlink_atomic(target, link)


def _own_folder(path: Path, recorded: bool, repaired: list[str]) -> None:
    """``path`` becomes (or stays) a real folder. Something else there is removed only in a recorded copy;
    otherwise refused: deploy never writes through a symlink."""
    if os.path.lexists(path) and not _is_real_dir(path):
        what = f"a symlink to {os.readlink(path)}" if path.is_symlink() else "not a folder"
        if not recorded:
            raise ConflictError(f"{path} is {what}; deploy does not write through it: remove it, or choose another "
                                "--target", details={"path": str(path)})
        path.unlink()
        repaired.append(f"removed {path} ({what})")
    path.mkdir(parents=True, exist_ok=True)


def _deploy_cache_repo(root: Path, repo: PlannedRepo, mat: _Materializer, *, recorded: bool,
                       cleaned: list[str], repaired: list[str]) -> DeployedRepo:
    before = (mat.linked, mat.copied, mat.reused)
    folder = root / cache_folder_name(repo.repo_id)
    _own_folder(folder, recorded, repaired)
    with _writing_in(folder, lambda: cache_leftovers(folder), cleaned):
        blobs = folder / "blobs"
        _own_folder(blobs, recorded, repaired)
        _own_folder(folder / "snapshots", recorded, repaired)
        for f in repo.files:
            mat.put(f, blobs / f.etag, f"{repo.repo_id}: blobs/{f.etag} ({f.path})")
        links = repo.files
        if repo.signature is not None:
            # model.sig as huggingface_hub stores a regular file: a blob named by its git sha1, linked from the snapshot
            etag = git_blob_sha1(repo.signature)
            if _write_file(blobs / etag, repo.signature):
                repaired.append(f"rewrote {repo.repo_id}: blobs/{etag} ({SIGNATURE_FILE})")
            links = (*repo.files, PlannedFile(SIGNATURE_FILE, len(repo.signature), "", "", etag))
        final = folder / "snapshots" / repo.commit
        if os.path.lexists(final) and not _is_real_dir(final):
            _own_folder(final, recorded, repaired)
        staging = folder / f".registry-staging-{uuid.uuid4().hex[:8]}"
        try:
            if not final.exists():
                _link_snapshot(staging / repo.commit, links, blobs, [])
                try:
                    os.rename(staging / repo.commit, final)  # the snapshot appears whole
                except OSError as exc:
                    if exc.errno not in (errno.EEXIST, errno.ENOTEMPTY) or not final.is_dir():
                        raise
            # Already there (an earlier deploy, a concurrent one, or huggingface_hub's own download): each link is
            # replaced atomically, so readers see the old link or the new one, never a missing file.
            _link_snapshot(final, links, blobs, repaired, recorded)
            if recorded:  # a snapshot the registry wrote and recorded: what is not the model's is drift
                _remove_extras(final, {f.path for f in links}, repaired)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        if repo.refs:
            _own_folder(folder / "refs", recorded, repaired)
        for name in repo.refs:
            try:
                ref_file = safe_join(folder / "refs", name)
            except ValueError:
                continue  # a ref name that cannot be a file name (the commit's snapshot is still there)
            try:
                was = ref_file.read_text(errors="replace") if not ref_file.is_symlink() else None
            except OSError:
                was = None
            if was != repo.commit:
                if recorded:
                    repaired.append(f"rewrote {repo.repo_id}: refs/{name} "
                                    f"({'it was missing' if not os.path.lexists(ref_file) else f'it held {was!r}'[:120]})")
                if _is_real_dir(ref_file):
                    shutil.rmtree(ref_file)
                _write_atomic(_real_parents(folder / "refs", name, repaired, recorded), repo.commit)
    linked, copied, reused = (mat.linked - before[0], mat.copied - before[1], mat.reused - before[2])
    return DeployedRepo(repo.repo_id, repo.commit, str(final), len(repo.files), sum(f.size for f in repo.files),
                        linked, copied, reused)


def _not_our_copy(target: Path, repo: PlannedRepo, mat: _Materializer) -> str | None:
    """Why the non-empty ``target`` is not exactly this model's complete copy (every file, its size and digest,
    nothing else but the model's own model.sig), or None when it is."""
    present = tree_entries(target)
    for f in repo.files:
        kind = present.pop(f.path, None)
        if kind is None:
            return f"{f.path} is missing"
        if kind != "file" or not mat.holds(safe_join(target, f.path), f):
            return f"{f.path} is not the model's"
    if repo.signature is not None and present.get(SIGNATURE_FILE) == "file" \
            and (target / SIGNATURE_FILE).read_bytes() == repo.signature:
        present.pop(SIGNATURE_FILE)
    if present:
        return f"{sorted(present)[0]} is not a file of the model"
    return None


def _deploy_dir(target: Path, repo: PlannedRepo, mat: _Materializer, *, recorded: bool,
                cleaned: list[str], repaired: list[str]) -> tuple[DeployedRepo, bool]:
    if target.is_symlink():
        raise ConflictError(f"{target} is a symlink (to {os.readlink(target)}); deploy does not write through it: "
                            "remove it, or choose another --target", details={"target": str(target)})
    target.parent.mkdir(parents=True, exist_ok=True)
    adopted = False
    with _writing_in(target.parent, lambda: dir_leftovers(target), cleaned):
        if target.exists() and (not target.is_dir() or any(target.iterdir())):
            if recorded:
                _repair_dir(target, repo, mat, repaired)
            elif (why := _not_our_copy(target, repo, mat)) is None:
                adopted = True  # a deploy killed between its rename and its catalog write: record what it made
                mat.reused += len(repo.files)
            else:
                raise ConflictError(f"{target} exists and is not an empty folder, nor a complete copy of "
                                    f"{repo.repo_id}@{repo.commit[:12]} ({why}); remove it or choose another --target",
                                    details={"target": str(target)})
        else:
            staging = target.parent / f".{target.name}.registry-staging-{uuid.uuid4().hex[:8]}"
            try:
                for f in repo.files:
                    dest = safe_join(staging, f.path)
                    dest.parent.mkdir(parents=True, exist_ok=True)
                    mat.put(f, dest)
                if repo.signature is not None:
                    _write_file(staging / SIGNATURE_FILE, repo.signature)
                if target.exists():
                    target.rmdir()
                os.rename(staging, target)  # the folder appears whole
            finally:
                shutil.rmtree(staging, ignore_errors=True)
    return (DeployedRepo(repo.repo_id, repo.commit, str(target), len(repo.files), sum(f.size for f in repo.files),
                         mat.linked, mat.copied, mat.reused), adopted)


def _repair_dir(target: Path, repo: PlannedRepo, mat: _Materializer, repaired: list[str]) -> None:
    """Make the recorded copy ``target`` exactly the model's again."""
    wanted = {f.path for f in repo.files} | ({SIGNATURE_FILE} if repo.signature is not None else set())
    _remove_extras(target, wanted, repaired)
    for f in repo.files:
        mat.put(f, _real_parents(target, f.path, repaired), f.path)
    if repo.signature is not None and _write_file(target / SIGNATURE_FILE, repo.signature):
        repaired.append(f"rewrote {SIGNATURE_FILE}")


def _recorded(reg: Registry, node: str, path: str, model: _Chosen) -> bool:
    """A live deployment of this very revision is recorded at ``path`` on ``node``: the registry wrote it."""
    with reg.catalog.reader() as session:
        return session.scalar(
            select(Deployment.id).where(Deployment.node == node, Deployment.path == path,
                                        Deployment.model_id == model.model_id, Deployment.commit_sha == model.commit,
                                        Deployment.removed_at.is_(None)).limit(1)) is not None


def deploy(reg: Registry, spec: str, target: Path | str, *, layout: str = "hf-cache", node: str | None = None,
           as_base: bool = False, unregistered: bool = False) -> DeployResult:
    """``unregistered``: also a verified model (``pull --local-dir``: a download, which needs no smoke proof);
    a quarantined one never."""
    if layout not in LAYOUTS:
        raise UsageError(f"--layout {layout!r}: choose one of {', '.join(LAYOUTS)}")
    target = Path(target).expanduser().absolute()
    if target.exists() and not target.is_dir():
        raise UsageError(f"--target {target} is a file; give a folder", details={"target": str(target)})
    model, planned = _plan(reg, spec, as_base, states.LOADABLE if unregistered else states.SERVED)
    node = node or reg.settings.host
    mat = _Materializer(reg)
    not_included: tuple[str, ...] = ()
    cleaned: list[str] = []
    repaired: list[str] = []
    adopted = False
    path = (str(target / cache_folder_name(model.name) / "snapshots" / model.commit) if layout == "hf-cache"
            else str(target))
    recorded = mat.recorded = _recorded(reg, node, path, model)
    try:
        if layout == "hf-cache":
            target.mkdir(parents=True, exist_ok=True)
            done = tuple(_deploy_cache_repo(target, repo, mat, recorded=recorded, cleaned=cleaned, repaired=repaired)
                         for repo in planned)
            path = done[-1].path
        else:
            own = [r for r in planned if r.repo_id == model.name]
            not_included = tuple(f"{r.repo_id}@{r.commit}" for r in planned if r.repo_id != model.name)
            deployed, adopted = _deploy_dir(target, own[0], mat, recorded=recorded, cleaned=cleaned,
                                            repaired=repaired)
            done = (deployed,)
    except OSError as exc:
        raise StorageError(f"deploying to {target} failed: {exc}") from exc
    finally:
        mat.flush()
    repaired = mat.replaced + repaired
    killpoint("deploy:after-rename")
    with reg.catalog.session() as session:
        for old in session.scalars(select(Deployment).where(Deployment.node == node, Deployment.path == path,
                                                            Deployment.removed_at.is_(None))):
            old.removed_at = dt.datetime.now(dt.timezone.utc)
        row = Deployment(model_id=model.model_id, node=node, path=path, layout=layout, commit_sha=model.commit,
                         root_digest=model.root_digest, actor=reg.settings.actor)
        session.add(row)
        session.flush()
        reg.log(session, "deploy", model.name, commit=model.commit, root_digest=model.root_digest,
                node=node, path=path, layout=layout, linked=mat.linked, copied=mat.copied,
                repaired=repaired[:100], repairs=len(repaired), cleaned=cleaned[:100], adopted=adopted)
        deployment_id = row.id
    signed = tuple(f"{r.repo_id}@{r.commit}" for r in planned if r.signature is not None
                   and (layout == "hf-cache" or r.repo_id == model.name))
    return DeployResult(deployment_id, model.name, model.commit, model.root_digest, layout, node,
                        reg.settings.actor, str(target), path, done, not_included, signed,
                        tuple(cleaned), tuple(repaired), adopted)
