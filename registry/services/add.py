"""``registry add PATH --name ORG/NAME``: import a local model folder, checked against its manifest.

A folder that does not satisfy its manifest is refused (nothing recorded): an incomplete model in
the catalog would be one more thing that looks loadable and is not. The refusal lists every
missing ``role: file`` so the user can fetch exactly those.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from registry.errors import IncompleteModel, IntegrityError, UsageError
from registry.formats import check_files
from registry.hashing import lfs_pointer_oid
from registry.manifest.resolve import LockedFile, RepoFile, Selection, lock, select
from registry.manifest.schema import REPO_ID_RE
from registry.services.context import Registry
from registry.services.folders import scan_folder
from registry.services.manifests import catalog_repo, choose_manifest, missing_repo_selection
from registry.services.record import RepoSource, record_model


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


def add_folder(reg: Registry, path: Path | str, name: str, *, revision: str | None = None,
               manifest_file: Path | None = None) -> AddResult:
    if not REPO_ID_RE.match(name or ""):
        raise UsageError(f"--name {name!r} is not a repo id like 'org/name'")
    folder = scan_folder(path)
    manifest = choose_manifest(reg.settings, name, manifest_file, list(folder.files), folder.read_json)
    own_listing = {p: RepoFile(p, f.stat().st_size) for p, f in folder.files.items()}

    # Select each component's files: our own from the folder, other repos' from the catalog.
    selections: list[Selection] = []
    others: dict[str, object] = {}
    with reg.catalog.reader() as session:
        for comp in manifest.components:
            if comp.repo == name:
                selections.append(select(comp, own_listing))
                continue
            found = catalog_repo(session, comp.repo, comp.revision)
            if found is None:
                why = "not in the catalog: `registry pull` or `registry add` it first"
                selections.append(missing_repo_selection(comp, why))
                continue
            others[comp.repo] = found
            selections.append(select(comp, found.listing))
    missing = [m for s in selections for m in s.missing]
    if missing:
        reg.log_now("add.refused", name, path=str(folder.root), missing=missing)
        raise IncompleteModel(
            f"{folder.root} does not satisfy the manifest of {name} ({manifest.source}); missing:\n  "
            + "\n  ".join(missing),
            missing=missing, details={"path": str(folder.root), "manifest": manifest.source},
        )

    # Format checks before any byte is stored.
    readable: dict[str, dict[str, Path]] = {}
    for sel in selections:
        files = readable.setdefault(sel.component.repo, {})
        for p in sel.paths:
            files[p] = folder.files[p] if sel.component.repo == name else reg.store.path_for(
                others[sel.component.repo].listing[p].sha256)  # type: ignore[attr-defined]
    pickles: list[str] = []
    for repo, files in readable.items():
        report = check_files(files, label=repo if repo != name else "")
        pickles.extend(report.pickles)

    # Ingest our own files (one pass: copy + sha256 + blake3 + git sha1), then check expectations.
    locked: dict[tuple[str, str], LockedFile] = {}
    new_blobs = 0
    for p, src in readable.get(name, {}).items():
        stored = reg.store.ingest_file(src)
        d = stored.digests
        new_blobs += stored.created
        lfs = d.git_sha1 is None
        locked[(name, p)] = LockedFile(p, d.size, d.sha256, d.blake3,
                                       lfs_pointer_oid(d.sha256, d.size) if lfs else d.git_sha1, lfs)  # type: ignore[arg-type]
    for repo, found in others.items():
        for p, lf in found.locked.items():  # type: ignore[attr-defined]
            locked[(repo, p)] = lf
    mismatched = []
    for sel in selections:
        for spec in sel.component.files:
            got = locked.get((sel.component.repo, spec.path))
            if got is None:
                continue
            if spec.sha256 and got.sha256 != spec.sha256:
                mismatched.append(f"{sel.component.role}: {spec.path}: sha256 is {got.sha256}, "
                                  f"the manifest expects {spec.sha256}")
            if spec.size is not None and got.size != spec.size:
                mismatched.append(f"{sel.component.role}: {spec.path}: size is {got.size}, the manifest expects {spec.size}")
    if mismatched:
        reg.log_now("add.refused", name, path=str(folder.root), mismatched=mismatched)
        raise IntegrityError("files do not match the manifest's digests:\n  " + "\n  ".join(mismatched),
                             details={"mismatched": mismatched})

    own_commit_placeholder = "0" * 40
    commits = {repo: found.commit for repo, found in others.items()}  # type: ignore[attr-defined]
    commits[name] = folder.snapshot_commit or own_commit_placeholder
    resolved = lock(manifest, selections, commits, locked)
    if folder.snapshot_commit is None:
        commits[name] = local_commit(resolved.root_digest)
        resolved = lock(manifest, selections, commits, locked)
    label = revision or "main"
    sources = {name: RepoSource(name, commits[name], f"local:{folder.root}", (label,))}
    for repo, found in others.items():
        sources[repo] = RepoSource(repo, found.commit, found.source)  # type: ignore[attr-defined]
    with reg.catalog.session() as session:
        model = record_model(session, resolved, sources, state="verified")
        reg.log(session, "add", name, commit=commits[name], root_digest=resolved.root_digest, path=str(folder.root),
                manifest=manifest.source, revision=label)
        state = model.state

    all_files = [f for c in resolved.components for f in c.files]
    return AddResult(
        name=name, commit=commits[name], revision=label, state=state, family=resolved.family,
        inferred=resolved.inferred, manifest_source=resolved.source, root_digest=resolved.root_digest,
        files=len(all_files), bytes=sum(f.size for f in all_files), new_blobs=new_blobs,
        components=tuple(ComponentSummary(c.role, c.repo, c.commit, len(c.files), sum(f.size for f in c.files), c.pinned)
                         for c in resolved.components),
        pickles=tuple(sorted(set(pickles))),
    )
