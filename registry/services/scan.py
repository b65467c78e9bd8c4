"""``registry audit --scan DIR``: what models sit in an HF cache or a folder of model folders that the registry did
not write, judged by their files (services/scan_layout.py reads them), never by their names.

Each model found gets one verdict:
    matches     every file of a catalogued model is there with its bytes (by digest); the root digest recomputed
                from what was found equals the registered one
    differs     it is a catalogued model's revision (same repo and commit, or mostly the same files), but some files
                have other bytes: which ones
    incomplete  files are missing against its manifest: the catalogued model's, or for an unknown model its curated
                or inferred one (an adapter without its base in this cache, a bge-m3 without a head): which pieces
    unknown     the catalog has no model with these files, and nothing is missing that its manifest needs
Everything odd on the way (broken links, stray partial downloads, refs to missing snapshots, blob names that do
not match their bytes) is listed as a problem. Nothing is fixed, registered or removed.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import any_, bindparam, func, select
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Session

from registry.catalog.models import Component, ComponentFile, File, Model, Repo, Revision
from registry.errors import RegistryError, UsageError
from registry.hashing import root_digest
from registry.manifest.resolve import RepoFile, select as select_files
from registry.manifest.schema import REPO_ID_RE
from registry.services.context import Registry
from registry.services.fleet import REGISTERED
from registry.services.manifests import choose_manifest
from registry.services.scan_layout import (FoundFile, FoundSnapshot, Hasher, ScanProblem, cache_repo_folders,
                                           model_folders, read_cache_repo, read_model_folder)
from registry.store.statcache import StatCache

_IN_CHUNK = 5000  # digests per IN (...): within SQLite's 32 766 and Postgres' 65 535 parameters
MAX_DETAILS = 50
# a scan verdict (the snapshot lacks pieces of its manifest), not a model state
INCOMPLETE = "incomplete"


@dataclass(frozen=True)
class FoundModel:
    kind: str                 # hf-cache | folder
    path: str
    repo_id: str | None
    commit: str | None
    files: int
    bytes: int
    verdict: str              # matches | differs | incomplete | unknown
    match: str | None         # NAME@COMMIT12 of the catalogued model it was judged against
    model_state: str | None   # that model's state (a match to a quarantined model is still a finding)
    root_digest: str | None   # recomputed from the files found, when every one of the model's files is there
    details: tuple[str, ...]


@dataclass(frozen=True)
class ScanReport:
    root: str
    layout: str               # hf-cache | folders
    models: tuple[FoundModel, ...]
    problems: tuple[ScanProblem, ...]
    files_hashed: int
    bytes_hashed: int

    @property
    def ok(self) -> bool:
        return not self.problems and all(m.verdict == "matches" and m.model_state == REGISTERED for m in self.models)


@dataclass(frozen=True)
class _Expected:
    model_id: int
    role: str
    revision_id: int
    repo: str
    commit: str
    path: str
    size: int
    sha256: str
    git_oid: str
    lfs: bool


def _chunks(values: Iterable[str]) -> Iterable[list[str]]:
    items = sorted(set(values))
    for i in range(0, len(items), _IN_CHUNK):
        yield items[i:i + _IN_CHUNK]


def _one_of(session: Session, column: Any, values: Iterable[Any]) -> Iterator[Any]:
    """Conditions ``column IN values``: on Postgres one ``= ANY(array)`` (each chunk of an IN list would cost it a
    scan of the table), elsewhere IN lists of _IN_CHUNK (SQLite probes its index per value)."""
    items = sorted(set(values))
    if not items:
        return
    if session.get_bind().dialect.name == "postgresql":
        yield column == any_(bindparam(None, items, type_=ARRAY(column.type)))
        return
    for i in range(0, len(items), _IN_CHUNK):
        yield column.in_(items[i:i + _IN_CHUNK])


Hits = dict[tuple[str, str, int], set[int]]


def _catalog_hits(session: Session, found: list[FoundSnapshot]) -> Hits:
    """(path, sha256, size) -> revision ids holding that path with those bytes; fills in the sha256 of files an HF
    cache names by git sha1, from the catalog."""
    paths = {f.path for s in found for f in s.files.values()}
    shas = {f.sha256 for s in found for f in s.files.values() if f.sha256}
    gits = {f.git_sha1 for s in found for f in s.files.values() if f.git_sha1 and not f.sha256}
    hits: Hits = {}
    git_to_sha: dict[str, str] = {}
    path_list = sorted(paths)
    for cond in _one_of(session, File.blob_sha256, shas):
        for rev, path, sha, size in session.connection().execute(
                select(File.revision_id, File.path, File.blob_sha256, File.size).where(cond)).all():
            if path in paths:
                hits.setdefault((path, sha, size), set()).add(rev)
    for cond in _one_of(session, File.git_oid, gits):
        q = select(File.revision_id, File.path, File.git_oid, File.blob_sha256, File.size).where(
            cond, File.lfs.is_(False))
        if len(path_list) <= _IN_CHUNK:
            q = q.where(File.path.in_(path_list))
        for rev, path, git, sha, size in session.connection().execute(q).all():
            if path in paths:
                hits.setdefault((path, sha, size), set()).add(rev)
                git_to_sha[git] = sha
    for s in found:
        for f in s.files.values():
            if f.sha256 is None and f.git_sha1 in git_to_sha:
                f.sha256 = git_to_sha[f.git_sha1]
    return hits


def _exact_revisions(session: Session, found: list[FoundSnapshot]) -> dict[tuple[str, str], int]:
    commits = {s.commit for s in found if s.commit}
    out: dict[tuple[str, str], int] = {}
    for chunk in _chunks(commits):
        for rid, repo, commit in session.connection().execute(select(Revision.id, Repo.repo_id, Revision.commit_sha)
                                                 .join(Repo, Repo.id == Revision.repo_id)
                                                 .where(Revision.commit_sha.in_(chunk))):
            out[(repo, commit)] = rid
    return out


def _models_for(session: Session, revisions: set[int]) -> dict[int, tuple[int, str, str, str, bool]]:
    """revision id -> (model id, name, commit, state, own) of the model to judge it against: one whose own
    revision it is (registered first, then the newest), else one that has it as a component (e.g. a base)."""
    out: dict[int, tuple[int, str, str, str, bool]] = {}
    for chunk in _chunks(map(str, revisions)):
        ids = [int(c) for c in chunk]
        own = session.connection().execute(select(Model.revision_id, Model.id, Model.name, Revision.commit_sha, Model.state)
                              .join(Revision, Revision.id == Model.revision_id)
                              .where(Model.revision_id.in_(ids)).order_by(Model.id)).all()
        for rid, mid, name, commit, state in own:
            best = out.get(rid)
            if best is None or state == REGISTERED or best[3] != REGISTERED:
                out[rid] = (mid, name, commit, state, True)
        rest = [i for i in ids if i not in out]
        if rest:
            for rid, mid, name, commit, state in session.connection().execute(
                    select(Component.revision_id, Model.id, Model.name, Revision.commit_sha, Model.state)
                    .join(Model, Model.id == Component.model_id).join(Revision, Revision.id == Model.revision_id)
                    .where(Component.revision_id.in_(rest)).order_by(Model.id)):
                out.setdefault(rid, (mid, name, commit, state, False))
    return out


def _expected(session: Session, model_ids: set[int]) -> dict[int, list[_Expected]]:
    out: dict[int, dict[tuple[str, str], _Expected]] = {}
    for cond in _one_of(session, Component.model_id, model_ids):
        q = (select(Component.model_id, Component.role, Component.revision_id, Repo.repo_id, Revision.commit_sha,
                    File.path, File.size, File.blob_sha256, File.git_oid, File.lfs)
             .join(ComponentFile, ComponentFile.component_id == Component.id)
             .join(File, File.id == ComponentFile.file_id)
             .join(Revision, Revision.id == Component.revision_id)
             .join(Repo, Repo.id == Revision.repo_id)
             .where(cond))
        for row in session.connection().execute(q).all():
            e = _Expected(*row)
            out.setdefault(e.model_id, {}).setdefault((e.repo, e.path), e)
    return {mid: list(files.values()) for mid, files in out.items()}


def _shapes(session: Session, model_ids: set[int]) -> dict[int, dict[int, tuple[str, int]]]:
    """model id -> {revision id of each component: (repo, number of distinct files)}: enough to call a snapshot
    whose every file the catalog lookup already matched a match, without fetching the model's file rows."""
    out: dict[int, dict[int, tuple[str, int]]] = {}
    for cond in _one_of(session, Component.model_id, model_ids):
        q = (select(Component.model_id, Component.revision_id, Repo.repo_id,
                    func.count(func.distinct(ComponentFile.file_id)))
             .join(ComponentFile, ComponentFile.component_id == Component.id)
             .join(Revision, Revision.id == Component.revision_id).join(Repo, Repo.id == Revision.repo_id)
             .where(cond).group_by(Component.model_id, Component.revision_id, Repo.repo_id))
        for mid, rid, repo, n in session.connection().execute(q).all():
            out.setdefault(mid, {})[rid] = (repo, n)
    return out


def _same(f: FoundFile, e: _Expected) -> bool:
    if f.size != e.size:
        return False
    if f.sha256 is not None:
        return f.sha256 == e.sha256
    return not e.lfs and f.git_sha1 == e.git_oid


def _compare(snap: FoundSnapshot, rid: int, files: list[_Expected], by_revision: dict[int, FoundSnapshot]
             ) -> tuple[list[str], list[str], list[tuple[str, int, str]]]:
    """(differs, missing, root digest entries of the files that match), file by file."""
    differs: list[str] = []
    missing: list[str] = []
    entries: list[tuple[str, int, str]] = []
    groups: dict[int, list[_Expected]] = {}
    for e in files:
        groups.setdefault(e.revision_id, []).append(e)
    for group_rev, group in sorted(groups.items(), key=lambda kv: kv[0] != rid):
        here = snap if group_rev == rid else by_revision.get(group_rev)
        if here is None:
            first = group[0]
            missing.append(f"{first.role}: {first.repo}@{first.commit[:12]} is not here ({len(group)} files)")
            continue
        prefix = "" if here is snap else f"{group[0].repo}/"
        for e in sorted(group, key=lambda x: x.path):
            f = here.files.get(e.path)
            if f is None:
                why = " (a broken link)" if e.path in here.broken else ""
                missing.append(f"{e.role}: {prefix}{e.path}{why}")
            elif not _same(f, e):
                found = f"sha256 {f.sha256[:12]}" if f.sha256 else f"git sha1 {(f.git_sha1 or '?')[:12]}"
                differs.append(f"{prefix}{e.path}: {f.size} bytes, {found}; registered: {e.size} bytes, "
                               f"sha256 {e.sha256[:12]}")
            elif f.sha256:
                entries.append((f"{e.repo}/{e.path}", f.size, f.sha256))
    return differs, missing, entries


def _finish(snap: FoundSnapshot, model: tuple[int, str, str, str, bool], exact: bool, differs: list[str],
            missing: list[str], entries: list[tuple[str, int, str]], total: int, used: set[str]) -> FoundModel:
    """The verdict and its details; ``total``: the model's files, ``used``: the paths of this snapshot it uses."""
    _mid, name, commit, state, own = model
    verdict = "differs" if differs else INCOMPLETE if missing else "matches"
    label = f"{name}@{commit[:12]}"
    details: list[str] = []
    if not own:
        details.append(f"judged as a component of {label} (no model of its own at this revision)")
    if not exact and snap.commit:
        details.append(f"the same files as {label}, found under commit {snap.commit[:12]}")
    digest = root_digest(entries) if len(entries) == total else None
    if verdict == "matches":
        details.append(f"root digest {digest}" + ("" if state == REGISTERED else f"; but {label} is {state}"))
    details += differs + missing
    extra = sorted(set(snap.files) - used)
    if extra and verdict == "matches":
        details.append(f"also holds {len(extra)} files the model does not use (e.g. {', '.join(extra[:3])})")
    return FoundModel(snap.kind, str(snap.path), snap.repo_id, snap.commit, len(snap.files),
                      sum(f.size for f in snap.files.values()), verdict, label, state, digest,
                      tuple(details[:MAX_DETAILS]))


def _quick_match(snap: FoundSnapshot, rid: int, shape: dict[int, tuple[str, int]], hits: Hits
                 ) -> tuple[list[tuple[str, int, str]], set[str]] | None:
    """A single-repo model every one of whose files the lookup found here, byte for byte: (entries, paths)."""
    if list(shape) != [rid]:
        return None
    repo, count = shape[rid]
    matched = [f for f in snap.files.values() if f.sha256 and rid in hits.get((f.path, f.sha256, f.size), ())]
    if len(matched) != count:
        return None
    return [(f"{repo}/{f.path}", f.size, f.sha256) for f in matched if f.sha256], {f.path for f in matched}


_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def _judge_unknown(reg: Registry, session: Session, snap: FoundSnapshot, found: list[FoundSnapshot]) -> FoundModel:
    name = snap.repo_id if snap.repo_id and REPO_ID_RE.match(snap.repo_id) else \
        "local/" + (_UNSAFE.sub("-", snap.path.name).strip("-.") or "model")
    details = ["no catalogued model has these files"]
    missing: list[str] = []
    try:
        manifest = choose_manifest(reg.settings, name, None, sorted(snap.files), snap.read_json)
    except RegistryError as exc:
        details.append(f"cannot tell what it needs: {exc.message}")
        manifest = None
    if manifest is not None:
        details.append(f"checked against its {'inferred' if manifest.inferred else 'curated'} manifest "
                       f"({manifest.family})")
        for comp in manifest.components:
            here = snap if comp.repo == name else next(
                (s for s in found if s.repo_id == comp.repo and (not comp.pinned_commit or s.commit == comp.revision)),
                None)
            if here is None:
                if not comp.required:
                    continue
                known = session.scalar(select(Repo.id).where(Repo.repo_id == comp.repo)) is not None
                missing.append(f"{comp.role}: {comp.repo}{'@' + comp.revision if comp.revision else ''} is not here"
                               + (" (the catalog has it: `registry deploy` it beside this one)" if known else ""))
                continue
            listing = {p: RepoFile(p, f.size, f.sha256) for p, f in here.files.items()}
            sel = select_files(comp, listing)
            missing += list(sel.missing) + list(sel.mismatched)
    if not missing:
        details.append(f"complete against its manifest; to register it: registry add {snap.path} --name {name}")
    return FoundModel(snap.kind, str(snap.path), snap.repo_id, snap.commit, len(snap.files),
                      sum(f.size for f in snap.files.values()), INCOMPLETE if missing else "unknown", None, None,
                      None, tuple((details + missing)[:MAX_DETAILS]))


def _identify(reg: Registry, session: Session, found: list[FoundSnapshot]) -> list[FoundModel]:
    hits = _catalog_hits(session, found)
    exact = _exact_revisions(session, found)
    chosen: list[tuple[FoundSnapshot, int | None, bool]] = []
    for snap in found:
        rid = exact.get((snap.repo_id or "", snap.commit or ""))
        if rid is not None:
            chosen.append((snap, rid, True))
            continue
        votes: Counter[int] = Counter()
        for f in snap.files.values():
            for r in hits.get((f.path, f.sha256 or "", f.size), ()):
                votes[r] += 1
        best = max(votes.items(), key=lambda kv: (kv[1], kv[0]))[0] if votes else None
        chosen.append((snap, best, False))
    by_revision = {rid: snap for snap, rid, _ in chosen if rid is not None}
    models = _models_for(session, {rid for _, rid, _ in chosen if rid is not None})
    shapes = _shapes(session, {m[0] for m in models.values()})
    quick: dict[int, tuple[list[tuple[str, int, str]], set[str]]] = {}
    for i, (snap, rid, _) in enumerate(chosen):
        if rid is not None and rid in models:
            got = _quick_match(snap, rid, shapes.get(models[rid][0], {}), hits)
            if got is not None:
                quick[i] = got
    # file rows only for the models the lookup could not settle (differs, incomplete, several repos)
    expected = _expected(session, {models[rid][0] for i, (_, rid, _) in enumerate(chosen)
                                   if rid is not None and rid in models and i not in quick})
    out = []
    for i, (snap, rid, is_exact) in enumerate(chosen):
        if rid is None or rid not in models:
            out.append(_judge_unknown(reg, session, snap, found))
            continue
        model = models[rid]
        total = sum(n for _, n in shapes.get(model[0], {}).values())
        if i in quick:
            entries, used = quick[i]
            out.append(_finish(snap, model, is_exact, [], [], entries, total, used))
        else:
            files = expected.get(model[0], [])
            differs, missing, entries = _compare(snap, rid, files, by_revision)
            used = {e.path for e in files if e.revision_id == rid}
            out.append(_finish(snap, model, is_exact, differs, missing, entries, len(files), used))
    return out


def scan_models(reg: Registry, root: Path | str, *, verify: bool = False, deep: bool = False) -> ScanReport:
    root = Path(root).expanduser().absolute()
    if not root.exists():
        raise UsageError(f"--scan {root}: no such folder", details={"path": str(root)})
    if not root.is_dir():
        raise UsageError(f"--scan {root}: not a folder; give an HF cache (~/.cache/huggingface/hub) or a folder of "
                         "model folders", details={"path": str(root)})
    problems: list[ScanProblem] = []
    hasher = Hasher(StatCache(reg.settings.home / "scan.statcache.sqlite"), deep=deep)
    repos = cache_repo_folders(root)
    if repos is not None:
        layout = "hf-cache"
        found = []
        for folder in repos:
            try:
                found += read_cache_repo(folder, hasher, hash_bytes=verify or deep, problems=problems)
            except OSError as exc:  # unreadable, or changed while we read it: reported, the scan goes on
                problems.append(ScanProblem(str(exc.filename or folder), f"cannot read: {exc.strerror or exc}"))
    else:
        layout = "folders"
        found = []
        for f in model_folders(root, problems):
            try:
                found.append(read_model_folder(f, root, hasher, problems))
            except OSError as exc:
                problems.append(ScanProblem(str(exc.filename or f), f"cannot read: {exc.strerror or exc}"))
    hasher.flush()
    with reg.catalog.reader() as session:
        models = _identify(reg, session, found)
    verdicts = Counter(m.verdict for m in models)
    reg.log_now("audit.scan", str(root)[:1000], layout=layout, models=len(models), verdicts=dict(verdicts),
                problems=len(problems), hashed=hasher.files, verify=verify or deep)
    return ScanReport(str(root), layout, tuple(models), tuple(problems), hasher.files, hasher.bytes)

