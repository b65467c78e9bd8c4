"""``registry verify``: are the bytes the catalog promises still in the store, unchanged?

Fast mode stats each blob and hashes only what changed since it was last proven (stat cache);
``--deep`` re-hashes everything with blake3. A model whose bytes changed or vanished is moved to
``quarantined`` so it is never served, deployed or loaded until it is pulled or added again.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from sqlalchemy import select
from sqlalchemy.orm import Session

from registry.catalog import states
from registry.catalog.models import Blob, Component, ComponentFile, File, Model, Repo, Revision
from registry.catalog.queries import all_models
from registry.services.context import Registry
from registry.store import ExpectedBlob, check_blobs
from registry.store.check import HashProgress

Problem = Literal["missing", "changed", "extra"]


@dataclass(frozen=True)
class FileProblem:
    model: str | None
    repo: str | None
    path: str | None
    sha256: str
    problem: Problem
    reason: str


@dataclass(frozen=True)
class VerifyReport:
    deep: bool
    models_checked: tuple[str, ...]
    files_checked: int
    blobs_checked: int
    blobs_hashed: int
    bytes_checked: int
    problems: tuple[FileProblem, ...]
    quarantined: tuple[str, ...]
    stray: tuple[str, ...]  # temp/partial files of interrupted writes (informational)
    released: tuple[str, ...] = ()  # models whose blob-caused quarantine ended: every blob of theirs is intact
    # leftovers that are not problems: blobs of a running or just-interrupted operation, staging folders of
    # running operations; `registry gc` removes what is still unreferenced once past its grace
    notes: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return not self.problems


def verify(reg: Registry, names: Sequence[str] = (), *, deep: bool = False,
           progress: HashProgress | None = None) -> VerifyReport:
    with reg.catalog.reader() as session:
        model_keys = _model_keys(session, names)
        blob_quarantined = [mid for mid, reason in session.execute(
            select(Model.id, Model.state_reason).where(Model.state == states.QUARANTINED,
                                                       Model.id.in_([mid for mid, _ in model_keys])))
            if states.cause_of(reason) is states.Cause.BYTES]
        wanted: dict[str, ExpectedBlob] = {}
        users: dict[str, list[tuple[str, str, str]]] = {}
        files_checked = 0
        key_of = dict(model_keys)
        for model_id, repo, path, size, sha, b3 in _model_files(session, list(key_of)):
            files_checked += 1
            wanted[sha] = ExpectedBlob(sha, size, b3)
            users.setdefault(sha, []).append((key_of[model_id], repo, path))
        referenced = set(session.scalars(select(Blob.sha256)).all()) if not names else set()
    checks = check_blobs(reg.store, reg.stat_cache, list(wanted.values()), deep=deep, progress=progress)
    problems: list[FileProblem] = []
    bad_models: set[str] = set()
    for check in checks:
        if check.status == "ok":
            continue
        for model_key, repo, path in users[check.sha256]:
            problems.append(FileProblem(model_key, repo, path, check.sha256, check.status, check.reason or ""))
            bad_models.add(model_key)
    notes: list[str] = []
    if not names:
        problems.extend(_extras(reg, referenced, notes))
    quarantined = _quarantine(reg, [mid for mid, key in model_keys if key in bad_models], problems)
    key_of_id = dict(model_keys)
    released = _release(reg, [mid for mid in blob_quarantined if key_of_id[mid] not in bad_models])
    reg.log_now("verify", ",".join(names) or "store", deep=deep, ok=not problems, models=len(model_keys),
                blobs_checked=len(checks), problems=len(problems), quarantined=list(quarantined))
    return VerifyReport(
        deep=deep,
        models_checked=tuple(key for _, key in model_keys),
        files_checked=files_checked,
        blobs_checked=len(checks),
        blobs_hashed=sum(c.hashed for c in checks),
        bytes_checked=sum(b.size for b in wanted.values()),
        problems=tuple(problems),
        quarantined=quarantined,
        stray=tuple(str(p) for p in reg.store.stray_files()),
        released=released,
        notes=tuple(notes),
    )


def _extras(reg: Registry, referenced: set[str], notes: list[str]) -> list[FileProblem]:
    """Blobs no catalog row references. One that a running operation claims (its lease), or younger than gc's
    grace (an add, pull or import that was refused or killed before its catalog commit), is a leftover, noted;
    an old one nobody claims is a problem ("extra")."""
    import time

    from registry.services.gc import DEFAULT_GRACE_S

    claimed = {sha for lease in reg.store.leases() if lease.live for sha in lease.digests}
    cutoff = time.time() - DEFAULT_GRACE_S
    young = leased = 0
    problems: list[FileProblem] = []
    for sha, path in reg.store.iter_blobs():
        if sha in referenced:
            continue
        if sha in claimed:
            leased += 1
            continue
        try:
            mtime = path.stat().st_mtime
        except FileNotFoundError:
            continue
        if mtime > cutoff:
            young += 1
        else:
            problems.append(FileProblem(None, None, None, sha, "extra", "blob not referenced by the catalog"))
    if leased:
        notes.append(f"{leased} unreferenced blob(s) belong to an operation running now (it records them when it "
                     "ends)")
    if young:
        notes.append(f"{young} unreferenced blob(s) younger than gc's grace ({DEFAULT_GRACE_S / 3600:g} h): "
                     "left by an add, pull or import that was refused or interrupted before its catalog commit "
                     "(a rerun reuses them); `registry gc` removes them once past the grace")
    running = sum(1 for _folder, live in reg.store.staging_folders() if live)
    if running:
        notes.append(f"{running} staging folder(s) in {reg.store.root / 'tmp'} belong to operations running now")
    return problems


def _model_keys(session: Session, names: Sequence[str]) -> list[tuple[int, str]]:
    """(model id, "name@commit12") of the named models, or of every model in one query."""
    if names:
        return [(m.id, m.name + "@" + m.revision.commit_sha[:12]) for m in all_models(session, names)]
    rows = session.execute(select(Model.id, Model.name, Revision.commit_sha)
                           .join(Revision, Revision.id == Model.revision_id).order_by(Model.name, Model.id))
    return [(mid, f"{name}@{commit[:12]}") for mid, name, commit in rows]


def _model_files(session: Session, model_ids: list[int]) -> list[tuple[int, str, str, int, str, str]]:
    """(model id, repo, path, size, sha256, blake3) of every file of these models, in one query (a catalog of
    thousands of files on a remote Postgres would otherwise cost a round trip per file)."""
    if not model_ids:
        return []
    q = (select(Component.model_id, Repo.repo_id, File.path, File.size, File.blob_sha256, Blob.blake3)
         .join(ComponentFile, ComponentFile.component_id == Component.id)
         .join(File, File.id == ComponentFile.file_id)
         .join(Blob, Blob.sha256 == File.blob_sha256)
         .join(Revision, Revision.id == Component.revision_id)
         .join(Repo, Repo.id == Revision.repo_id)
         .where(Component.model_id.in_(model_ids))
         .order_by(Component.model_id, Component.position, File.path))
    return [tuple(row) for row in session.execute(q)]  # type: ignore[misc]


def _quarantine(reg: Registry, model_ids: list[int], problems: list[FileProblem]) -> tuple[str, ...]:
    if not model_ids:
        return ()
    done = []
    with reg.catalog.session() as session:
        for model in session.scalars(select(Model).where(Model.id.in_(model_ids))):
            key = model.name + "@" + model.revision.commit_sha[:12]
            mine = [p for p in problems if p.model == key]
            detail = "; ".join(f"{p.repo}/{p.path} {p.problem} ({p.reason})" for p in mine[:5])
            if states.quarantine(model, states.Cause.BYTES, detail):
                reg.log(session, "quarantine", model.name, commit=model.revision.commit_sha, reason=model.state_reason)
            done.append(key)
    return tuple(done)


def _release(reg: Registry, model_ids: list[int]) -> tuple[str, ...]:
    """Lift the blob-caused quarantine of these models (every blob of theirs was just proven intact)."""
    if not model_ids:
        return ()
    done = []
    with reg.catalog.session() as session:
        for model in session.scalars(select(Model).where(Model.id.in_(model_ids)).with_for_update()):
            reason = model.state_reason
            if states.lift(model, states.Cause.BYTES):
                reg.log(session, "release", model.name, commit=model.revision.commit_sha, lifted=reason)
                done.append(model.name + "@" + model.revision.commit_sha[:12])
    return tuple(done)


def release_proven(reg: Registry, shas: set[str]) -> tuple[str, ...]:
    """Every model quarantined for its blobs that uses one of ``shas`` (blobs an ingest has just proven) is
    released once all of its blobs pass a fast verify; returns them as ``name@commit``."""
    if not shas:
        return ()
    with reg.catalog.reader() as session:
        ids = session.scalars(
            select(Model.id).distinct().join(Component, Component.model_id == Model.id)
            .join(ComponentFile, ComponentFile.component_id == Component.id)
            .join(File, File.id == ComponentFile.file_id)
            .where(Model.state == states.QUARANTINED, File.blob_sha256.in_(sorted(shas)))
        ).all()
        candidates = [m.id for m in session.scalars(select(Model).where(Model.id.in_(ids)))
                      if states.cause_of(m.state_reason) is states.Cause.BYTES]
        rows = _model_files(session, candidates)
    expected = {sha: ExpectedBlob(sha, size, b3) for _mid, _repo, _path, size, sha, b3 in rows}
    intact = {c.sha256 for c in check_blobs(reg.store, reg.stat_cache, list(expected.values()), deep=False)
              if c.status == "ok"}
    whole = [mid for mid in candidates if all(sha in intact for m, _r, _p, _s, sha, _b in rows if m == mid)]
    return _release(reg, whole)
