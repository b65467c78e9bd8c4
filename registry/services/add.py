"""``registry add PATH --name ORG/NAME``: import a local model folder, checked against its manifest.

A folder that does not satisfy its manifest is refused (nothing recorded): an incomplete model in
the catalog would be one more thing that looks loadable and is not. The refusal lists every
missing ``role: file`` so the user can fetch exactly those.

Plan, check, then write: the manifest's files are selected and format-checked first; the folder's
bytes are then copied into temp files of the store while hashed (one pass); only when every size
and digest matches are the blobs moved under their names and the model recorded, in one catalog
transaction. A refusal at any step leaves the catalog and the store as they were.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import exc as sa_exc
from sqlalchemy import select as sa_select

from registry.catalog.models import Model
from registry.catalog.queries import find_revision
from registry.errors import FormatError, IncompleteModel, IntegrityError, StorageError, UsageError
from registry.formats import check_files
from registry.hashing import LFS_THRESHOLD, SHA1_RE, SHA256_RE, lfs_pointer_oid
from registry.manifest.resolve import LockedFile, RepoFile, ResolvedManifest, Selection, lock, select
from registry.manifest.schema import REPO_ID_RE, Manifest
from registry.services.context import Registry
from registry.services.leasing import leased
from registry.services.folders import Folder, scan_folder
from registry.services.manifests import CatalogRepo, catalog_repo, choose_manifest, missing_repo_selection
from registry.services.record import RepoSource, record_model
from registry.store import ExpectedBlob, StagedBlob, check_blobs

if TYPE_CHECKING:
    from registry.fetch.progress import Progress

# The Hub's default .gitattributes stores these in LFS whatever their size (a 3 kB sparse_linear.pt too).
HUB_LFS_SUFFIXES = (
    ".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".h5", ".msgpack", ".onnx", ".ot", ".model", ".pkl", ".pickle",
    ".npy", ".npz", ".joblib", ".pb", ".tflite", ".mlmodel", ".arrow", ".parquet", ".gguf", ".wasm", ".zip", ".gz",
    ".tgz", ".xz", ".zst", ".bz2", ".lz4", ".7z", ".rar", ".tar", ".ftz",
)


@dataclass(frozen=True)
class ComponentSummary:
    role: str
    repo: str
    commit: str
    files: int
    bytes: int
    pinned: bool


@dataclass(frozen=True)
class AddResult:
    name: str
    commit: str
    revision: str
    state: str
    family: str
    inferred: bool
    manifest_source: str | None
    root_digest: str
    files: int
    bytes: int
    new_blobs: int
    components: tuple[ComponentSummary, ...]
    pickles: tuple[str, ...]


def local_commit(root_digest: str) -> str:
    """A folder has no git commit: name its revision by its content, so the same bytes give the same id."""
    return hashlib.sha1(f"registry-local\0{root_digest}".encode()).hexdigest()


def _snapshot_etag(folder: Folder, rel: str) -> str | None:
    """In an HF cache snapshot each file links to ``blobs/<etag>``: sha256 for LFS files, git sha1 otherwise."""
    if folder.snapshot_commit is None:
        return None
    target = folder.files[rel]
    return target.name if target.parent.name == "blobs" and (SHA256_RE.match(target.name) or SHA1_RE.match(target.name)) else None


def _is_lfs(rel: str, size: int, etag: str | None) -> bool:
    if etag is not None:
        return bool(SHA256_RE.match(etag))
    return size >= LFS_THRESHOLD or rel.endswith(HUB_LFS_SUFFIXES)


def _refuse(reg: Registry, name: str, folder: Folder, error: Exception, **details: object) -> Exception:
    reg.log_now("add.refused", name, path=str(folder.root), **details)
    return error


def _select_all(reg: Registry, manifest: Manifest, name: str, own: dict[str, RepoFile]
                ) -> tuple[list[Selection], dict[str, CatalogRepo]]:
    """Each component's files: our own from the folder, other repos' (a base, a tokenizer) from the catalog."""
    selections: list[Selection] = []
    others: dict[str, CatalogRepo] = {}
    with reg.catalog.reader() as session:
        for comp in manifest.components:
            if comp.repo == name:
                selections.append(select(comp, own))
                continue
            found = catalog_repo(session, comp.repo, comp.revision)
            if found is None:
                why = "not in the catalog: `registry pull` or `registry add` it first"
                selections.append(missing_repo_selection(comp, why))
                continue
            others[comp.repo] = found
            selections.append(select(comp, found.listing))
    return selections, others


def _check_other_repos_in_store(reg: Registry, selections: list[Selection], others: dict[str, CatalogRepo]) -> list[str]:
    """Files this model borrows from other repos must be in the store, unchanged (fast check, stat cache)."""
    wanted: dict[str, tuple[str, str]] = {}
    expected: list[ExpectedBlob] = []
    for sel in selections:
        found = others.get(sel.component.repo)
        for p in sel.paths if found is not None else ():
            lf = found.locked[p]
            wanted[lf.sha256] = (sel.component.role, f"{sel.component.repo}/{p}")
            expected.append(ExpectedBlob(lf.sha256, lf.size, lf.blake3))
    problems = []
    for check in check_blobs(reg.store, reg.stat_cache, expected, deep=False):
        if check.status != "ok":
            role, where = wanted[check.sha256]
            problems.append(f"{role}: {where} ({check.status} in the store: {check.reason}; run `registry verify`)")
    return problems


@leased("add")
def add_folder(reg: Registry, path: Path | str, name: str, *, revision: str | None = None,
               manifest_file: Path | None = None, progress: Progress | None = None) -> AddResult:
    if not REPO_ID_RE.match(name or ""):
        raise UsageError(f"--name {name!r} is not a repo id like 'org/name'")
    folder = scan_folder(path)
    manifest = choose_manifest(reg.settings, name, manifest_file, list(folder.files), folder.read_json)
    own_listing = {p: RepoFile(p, f.stat().st_size) for p, f in folder.files.items()}
    selections, others = _select_all(reg, manifest, name, own_listing)

    missing = [m for s in selections for m in s.missing] + _check_other_repos_in_store(reg, selections, others)
    if missing:
        raise _refuse(reg, name, folder, IncompleteModel(
            f"{folder.root} does not satisfy the manifest of {name} ({manifest.source}); missing:\n  "
            + "\n  ".join(missing),
            missing=missing, details={"path": str(folder.root), "manifest": manifest.source},
        ), missing=missing)
    # sizes (and other repos' digests) are known before any byte is read
    mismatched = [m for s in selections for m in s.mismatched]
    if mismatched:
        raise _refuse(reg, name, folder, IntegrityError(
            "files do not match the manifest:\n  " + "\n  ".join(mismatched), details={"mismatched": mismatched},
        ), mismatched=mismatched)

    # Format checks before any byte is stored.
    readable: dict[str, dict[str, Path]] = {}
    for sel in selections:
        files = readable.setdefault(sel.component.repo, {})
        for p in sel.paths:
            files[p] = folder.files[p] if sel.component.repo == name else reg.store.path_for(
                others[sel.component.repo].listing[p].sha256 or "")
    pickles: list[str] = []
    try:
        for repo, files in readable.items():
            own = repo == name
            pickles.extend(check_files(files, label="" if own else repo,
                                       siblings=list(folder.files) if own else ()).pickles)
    except (FormatError, IncompleteModel) as exc:
        raise _refuse(reg, name, folder, exc, format=exc.message) from None

    own_files = readable.get(name, {})
    staged = _stage(reg, folder, own_files, progress)
    try:
        locked, problems = _lock_own(folder, name, staged, selections)
        if problems:
            raise _refuse(reg, name, folder, IntegrityError(
                "files do not match the manifest's digests:\n  " + "\n  ".join(problems),
                details={"mismatched": problems},
            ), mismatched=problems)
        for repo, found in others.items():
            for p, lf in found.locked.items():
                locked[(repo, p)] = lf
        commits = {repo: found.commit for repo, found in others.items()}
        commits[name] = folder.snapshot_commit or "0" * 40
        resolved = lock(manifest, selections, commits, locked)
        if folder.snapshot_commit is None:
            commits[name] = local_commit(resolved.root_digest)
            resolved = lock(manifest, selections, commits, locked)
        # Blobs go in place before the catalog row that claims them.
        new_blobs = 0
        for p in list(staged):
            new_blobs += reg.store.commit_staged(staged.pop(p)).created
    finally:
        for leftover in staged.values():
            reg.store.discard(leftover)

    labels = (revision,) if revision else (folder.snapshot_refs or (() if folder.snapshot_commit else ("main",)))
    sources = {name: RepoSource(name, commits[name], f"local:{folder.root}", labels)}
    for repo, found in others.items():
        sources[repo] = RepoSource(repo, found.commit, found.source)
    state = _record(reg, resolved, sources, dict(commit=commits[name], root_digest=resolved.root_digest,
                                                  path=str(folder.root), manifest=manifest.source,
                                                  revision=",".join(labels)))

    all_files = [f for c in resolved.components for f in c.files]
    return AddResult(
        name=name, commit=commits[name], revision=",".join(labels), state=state, family=resolved.family,
        inferred=resolved.inferred, manifest_source=resolved.source, root_digest=resolved.root_digest,
        files=len(all_files), bytes=sum(f.size for f in all_files), new_blobs=new_blobs,
        components=tuple(ComponentSummary(c.role, c.repo, c.commit, len(c.files), sum(f.size for f in c.files), c.pinned)
                         for c in resolved.components),
        pickles=tuple(sorted(set(pickles))),
    )


def _record(reg: Registry, resolved: ResolvedManifest, sources: dict[str, RepoSource], event: dict[str, object]) -> str:
    """One transaction. Re-adding the same bytes keeps ``registered`` (the smoke test proved them) and a
    quarantine for any reason but bad bytes, which this add has just re-proven. Two adds racing on the
    same new rows: the loser retries and finds them."""
    own = sources[resolved.name]
    for attempt in range(4):
        try:
            with reg.catalog.session() as session:
                rev = find_revision(session, resolved.name, own.commit)
                old = None if rev is None else session.scalars(
                    sa_select(Model).where(Model.name == resolved.name, Model.revision_id == rev.id)).one_or_none()
                state, reason = "verified", None
                if old is not None and old.root_digest == resolved.root_digest:
                    if old.state == "registered" or (old.state == "quarantined"
                                                     and not (old.state_reason or "").startswith("verify:")):
                        state, reason = old.state, old.state_reason
                model = record_model(session, resolved, sources, state=state, reason=reason)
                reg.log(session, "add", resolved.name, **event, state=state)
                return model.state
        except sa_exc.IntegrityError as exc:
            if attempt == 3:
                raise StorageError(f"recording {resolved.name} in the catalog failed: {exc.orig}") from exc
            time.sleep(0.05 * (attempt + 1))
    raise AssertionError("unreachable")


def _stage(reg: Registry, folder: Folder, files: dict[str, Path], progress: Progress | None) -> dict[str, StagedBlob]:
    """Copy and hash every file into the store's temp area; on any failure, drop what was staged."""
    staged: dict[str, StagedBlob] = {}
    sizes = {p: src.stat().st_size for p, src in files.items()}
    if progress is not None:
        progress.begin(sum(sizes.values()), len(files))
    try:
        for p, src in files.items():
            etag = _snapshot_etag(folder, p)
            on_bytes = None
            if progress is not None:
                progress.file_begin(p, p, sizes[p], 0)
                on_bytes = (lambda n, key=p: progress.advance(key, n))
            staged[p] = reg.store.stage_file(src, git=True if etag and SHA1_RE.match(etag) else None,
                                             progress=on_bytes)
            if progress is not None:
                progress.file_end(p)
    except BaseException:
        for s in staged.values():
            reg.store.discard(s)
        raise
    finally:
        if progress is not None:
            progress.end()
    return staged


def _lock_own(folder: Folder, name: str, staged: dict[str, StagedBlob], selections: list[Selection]
              ) -> tuple[dict[tuple[str, str], LockedFile], list[str]]:
    """The folder's files as locked entries, and every way their bytes contradict the manifest or the cache."""
    locked: dict[tuple[str, str], LockedFile] = {}
    problems: list[str] = []
    for p, s in staged.items():
        d = s.digests
        etag = _snapshot_etag(folder, p)
        if etag is not None and etag not in (d.sha256, d.git_sha1):
            problems.append(f"{p}: the HF cache names it blobs/{etag}, but its bytes hash to sha256 {d.sha256} "
                            f"(a corrupt cache entry)")
        lfs = _is_lfs(p, d.size, etag)
        git_oid = lfs_pointer_oid(d.sha256, d.size) if lfs or d.git_sha1 is None else d.git_sha1
        locked[(name, p)] = LockedFile(p, d.size, d.sha256, d.blake3, git_oid, lfs)
    for sel in selections:
        if sel.component.repo != name:
            continue
        for spec in sel.component.files:
            got = locked.get((name, spec.path))
            if got is not None and spec.sha256 and got.sha256 != spec.sha256:
                problems.append(f"{sel.component.role}: {spec.path}: sha256 is {got.sha256}, "
                                f"the manifest expects {spec.sha256}")
    return locked, problems
