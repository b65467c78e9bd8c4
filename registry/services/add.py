"""``registry add PATH --name ORG/NAME``: import a local model folder, checked against its manifest.

The steps and their rules are the ingest pipeline's (services/ingest.py), shared with ``pull``; this
module is the folder as a source of bytes. A folder that does not satisfy its manifest is refused
(nothing recorded): an incomplete model in the catalog would be one more thing that looks loadable
and is not. The refusal lists every missing ``role: file`` so the user can fetch exactly those.

The selected files are format-checked where they lie, then copied into temp files of the store while
hashed (one pass); only when every size and digest matches are the blobs moved under their names and
the model recorded, in one catalog transaction. A refusal at any step leaves the catalog and the store
as they were.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from registry.errors import UsageError
from registry.hashing import LFS_THRESHOLD, SHA1_RE, SHA256_RE, lfs_pointer_oid
from registry.manifest.resolve import LockedFile, RepoFile, ResolvedManifest, Selection, lock, select
from registry.manifest.schema import REPO_ID_RE, Manifest
from registry.paths import require_ref
from registry.services.context import Registry
from registry.services.leasing import leased
from registry.services.folders import Folder, scan_folder
from registry.services.ingest import (
    Acquired, ComponentSummary, Plan, Source, make_plan, selected, summaries, totals,
)
from registry.services.ingest import run as ingest_run
from registry.services.manifests import (
    CatalogRepo, catalog_base_lookup, catalog_repo, choose_manifest, missing_repo_selection,
)
from registry.services.record import RepoSource
from registry.services.register import RegisterResult, register_after_ingest
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
    family_rule: str = ""  # "family bge-m3: colbert_linear.pt present"
    disagreements: tuple[str, ...] = ()  # where the name or a curated manifest and the files disagreed
    ignored: tuple[str, ...] = ()    # files of the folder that the manifest does not select (not imported)
    released: tuple[str, ...] = ()   # other models released from a blob-caused quarantine by these bytes
    registration: RegisterResult | None = None  # how the registration step ended (ran, skipped and why)


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


class _FolderSource(Source):
    """A local folder: its files are read in place, staged (copied and hashed) into the store's temp area,
    and moved under their names only once everything matched; other repos' files come from the catalog."""

    action = "add"

    def __init__(self, reg: Registry, folder: Folder, others: dict[str, CatalogRepo], revision: str | None,
                 progress: Progress | None) -> None:
        self.reg, self.folder, self.others, self.revision, self.progress = reg, folder, others, revision, progress
        self.staged: dict[str, StagedBlob] = {}

    def describe(self, plan: Plan) -> str:
        return str(self.folder.root)

    def context(self) -> dict[str, Any]:
        return {"path": str(self.folder.root)}

    def missing(self, plan: Plan) -> list[str]:
        """Files this model borrows from other repos must be in the store, unchanged (fast check, stat cache)."""
        wanted: dict[str, tuple[str, str]] = {}
        expected: list[ExpectedBlob] = []
        for repo, p in selected(plan):
            found = self.others.get(repo)
            if found is not None:
                lf = found.locked[p]
                role = next(s.component.role for s in plan.selections if s.component.repo == repo and p in s.paths)
                wanted[lf.sha256] = (role, f"{repo}/{p}")
                expected.append(ExpectedBlob(lf.sha256, lf.size, lf.blake3))
        problems = []
        for check in check_blobs(self.reg.store, self.reg.stat_cache, expected, deep=False):
            if check.status != "ok":
                role, where = wanted[check.sha256]
                problems.append(f"{role}: {where} ({check.status} in the store: {check.reason}; run `registry verify`)")
        return problems

    def readable_now(self, plan: Plan) -> dict[str, dict[str, Path]]:
        readable: dict[str, dict[str, Path]] = {}
        for repo, p in selected(plan):
            readable.setdefault(repo, {})[p] = self.folder.files[p] if repo == plan.name else \
                self.reg.store.path_for(self.others[repo].locked[p].sha256)
        return readable

    def acquire(self, plan: Plan) -> Acquired:
        own = {p: self.folder.files[p] for repo, p in selected(plan) if repo == plan.name}
        self.staged = _stage(self.reg, self.folder, own, self.progress)
        for p in sorted(set(self.staged) & set(self.folder.outside_links)):
            if not self.reg.store.same_file(self.staged[p].digests.sha256, self.folder.files[p]):
                self.release()  # drop what was staged: nothing is stored
                self.folder.refuse_outside_link(p)
        locked, problems = _lock_own(self.folder, plan.name, self.staged)
        for repo, found in self.others.items():
            for p, lf in found.locked.items():
                locked[(repo, p)] = lf
        return Acquired(locked, self.readable_now(plan), tuple(problems))

    def locate(self, plan: Plan, locked: Mapping[tuple[str, str], LockedFile]
               ) -> tuple[ResolvedManifest, dict[str, RepoSource]]:
        commits = {repo: found.commit for repo, found in self.others.items()}
        commits[plan.name] = self.folder.snapshot_commit or "0" * 40
        resolved = lock(plan.manifest, plan.selections, commits, locked)
        if self.folder.snapshot_commit is None:
            commits[plan.name] = local_commit(resolved.root_digest)
            resolved = lock(plan.manifest, plan.selections, commits, locked)
        sources = {plan.name: RepoSource(plan.name, commits[plan.name], f"local:{self.folder.root}", self.labels)}
        for repo, found in self.others.items():
            sources[repo] = RepoSource(repo, found.commit, found.source)
        return resolved, sources

    @property
    def labels(self) -> tuple[str, ...]:
        if self.revision:
            return (self.revision,)
        return self.folder.snapshot_refs or (() if self.folder.snapshot_commit else ("main",))

    def keep(self) -> int:
        # Blobs go in place before the catalog row that claims them.
        new_blobs = 0
        for p in list(self.staged):
            new_blobs += self.reg.store.commit_staged(self.staged.pop(p)).created
        return new_blobs

    def release(self) -> None:
        for leftover in self.staged.values():
            self.reg.store.discard(leftover)
        self.staged.clear()

    def event(self, plan: Plan, resolved: ResolvedManifest, commit: str) -> dict[str, Any]:
        return dict(commit=commit, root_digest=resolved.root_digest, path=str(self.folder.root),
                    manifest=plan.manifest.source, revision=",".join(self.labels))


@leased("add")
def add_folder(reg: Registry, path: Path | str, name: str, *, revision: str | None = None,
               manifest_file: Path | str | None = None, progress: Progress | None = None,
               register: bool | None = False, device: str = "auto",
               approve: Callable[[ResolvedManifest], None] | None = None) -> AddResult:
    """Import a folder; ``register`` as in ``register_after_ingest`` (the CLI and ``registry.add`` pass None:
    REGISTRY_SMOKE decides; services that register themselves, such as merge, leave it False). ``approve``
    (e.g. a signature check) sees the resolved model last and may refuse it: nothing is stored then."""
    if not REPO_ID_RE.match(name or ""):
        raise UsageError(f"--name {name!r} is not a repo id like 'org/name'")
    if revision is not None:
        require_ref(revision)
    folder = scan_folder(path)
    manifest_path = Path(manifest_file) if manifest_file is not None else None
    manifest = choose_manifest(reg.settings, name, manifest_path, list(folder.files), folder.read_json,
                               catalog_base_lookup(reg))
    own_listing = {p: RepoFile(p, f.stat().st_size) for p, f in folder.files.items()}
    selections, others = _select_all(reg, manifest, name, own_listing)
    plan = make_plan(name, manifest, selections, explicit=manifest_path is not None, own_paths=folder.files)
    source = _FolderSource(reg, folder, others, revision, progress)
    done = ingest_run(reg, source, plan, approve=approve)
    registration = register_after_ingest(reg, name, done.commit, register=register, device=device)
    files, size = totals(done.resolved)
    return AddResult(
        name=name, commit=done.commit, revision=",".join(source.labels),
        state=registration.state, family=done.resolved.family,
        inferred=done.resolved.inferred, manifest_source=done.resolved.source, root_digest=done.resolved.root_digest,
        files=files, bytes=size, new_blobs=done.new_blobs, components=summaries(done.resolved),
        pickles=done.pickles, family_rule=done.resolved.family_rule,
        disagreements=tuple((done.resolved.inference or {}).get("disagreements", ())),
        ignored=plan.ignored, released=done.released, registration=registration,
    )


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


def _lock_own(folder: Folder, name: str, staged: dict[str, StagedBlob]
              ) -> tuple[dict[tuple[str, str], LockedFile], list[str]]:
    """The folder's files as locked entries, and every way their bytes contradict the HF cache they came from."""
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
    return locked, problems
