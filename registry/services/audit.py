"""``registry audit``: which revisions are deployed on which nodes, are the copies intact, are they current.

Without ``verify`` it is the catalog's view of the whole fleet (services/fleet.py): one query, no disk access,
the same answer on every host of a fleet that shares one catalog. With ``verify`` it first checks this node's
copies on disk (services/copy_check.py, through a stat cache; ``deep`` re-hashes) and records each result on its
deployment row (when, by whom, from which host, what was found) and one ``audit`` event for the run, so that
every other host sees them. Nothing is repaired or quarantined: findings are reported, and fixing them (deploy
again, undeploy, `registry verify`) is the operator's call.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import bindparam, select, update
from sqlalchemy.orm import Session

from registry.catalog.models import Blob, Component, ComponentFile, Deployment, File, Model, Ref, Repo, Revision
from registry.services.audit_signature import SIGNED, catalog_signatures, check_copy_signature
from registry.services.context import Registry
from registry.services.copy_check import MAX_LISTED, CopyCheck, ExpectedFile, check_copy, deployed_stat_cache
from registry.services.fleet import FleetFilter, FleetRow, fleet_counts, fleet_rows

_IN_CHUNK = 500


@dataclass(frozen=True)
class StoreLoss:
    """A catalog file row whose blob the store no longer has (the deployed copy may still be fine)."""

    name: str
    commit: str
    repo: str
    path: str
    sha256: str


@dataclass(frozen=True)
class NodeVerification:
    node: str
    deep: bool
    at: dt.datetime
    actor: str
    host: str
    deployments: int
    by_state: dict[str, int]
    files_checked: int
    files_hashed: int
    bytes_hashed: int
    store_lost: tuple[StoreLoss, ...]


@dataclass(frozen=True)
class AuditReport:
    node: str | None          # None: every node
    models: tuple[str, ...]
    rows: tuple[FleetRow, ...]
    counts: dict[str, int]
    verification: NodeVerification | None

    @property
    def ok(self) -> bool:
        lost = self.verification.store_lost if self.verification else ()
        return all(r.state == "ok" for r in self.rows) and not lost


def expected_files(session: Session, model_ids: Iterable[int]) -> dict[int, list[ExpectedFile]]:
    """Every file each model's deployment holds, per model, in one query per 500 models."""
    ids = sorted(set(model_ids))
    out: dict[int, dict[tuple[str, str], ExpectedFile]] = {}
    for i in range(0, len(ids), _IN_CHUNK):
        q = (select(Component.model_id, Repo.repo_id, Revision.commit_sha, File.path, File.size, File.blob_sha256,
                    Blob.blake3, File.git_oid, File.lfs, Component.revision_id, Model.revision_id)
             .join(Model, Model.id == Component.model_id)
             .join(ComponentFile, ComponentFile.component_id == Component.id)
             .join(File, File.id == ComponentFile.file_id)
             .join(Blob, Blob.sha256 == File.blob_sha256)
             .join(Revision, Revision.id == Component.revision_id)
             .join(Repo, Repo.id == Revision.repo_id)
             .where(Component.model_id.in_(ids[i:i + _IN_CHUNK])))
        for mid, repo, commit, path, size, sha, b3, oid, lfs, comp_rev, model_rev in session.execute(q):
            out.setdefault(mid, {})[(repo, path)] = ExpectedFile(repo, commit, path, size, sha, b3,
                                                                 sha if lfs else oid, comp_rev == model_rev)
    return {mid: sorted(files.values(), key=lambda f: (f.repo, f.path)) for mid, files in out.items()}


def expected_refs(session: Session, model_ids: Iterable[int]) -> dict[int, dict[tuple[str, str], tuple[str, ...]]]:
    """Per model, per (repo, commit) of its components: the ref names deploy writes into an HF cache (the catalog's
    refs naming that revision, and ``main`` when the repo has none), as services/deploy.py plans them."""
    ids = sorted(set(model_ids))
    comps: list[tuple[int, str, int, int, str]] = []
    for i in range(0, len(ids), _IN_CHUNK):
        comps.extend(session.execute(
            select(Component.model_id, Repo.repo_id, Repo.id, Revision.id, Revision.commit_sha)
            .join(Revision, Revision.id == Component.revision_id).join(Repo, Repo.id == Revision.repo_id)
            .where(Component.model_id.in_(ids[i:i + _IN_CHUNK]))).all())
    repo_ids = sorted({c[2] for c in comps})
    names: dict[int, dict[str, int]] = {}
    for i in range(0, len(repo_ids), _IN_CHUNK):
        for repo_id, name, rev_id in session.execute(select(Ref.repo_id, Ref.name, Ref.revision_id)
                                                     .where(Ref.repo_id.in_(repo_ids[i:i + _IN_CHUNK]))):
            names.setdefault(repo_id, {})[name] = rev_id
    out: dict[int, dict[tuple[str, str], tuple[str, ...]]] = {}
    for mid, repo, repo_pk, rev_id, commit in comps:
        have = names.get(repo_pk, {})
        here = {n for n, r in have.items() if r == rev_id}
        if "main" not in have:
            here.add("main")
        out.setdefault(mid, {})[(repo, commit)] = tuple(sorted(here))
    return out


def _live_cache_commits(session: Session, node: str) -> dict[str, dict[str, frozenset[str]]]:
    """Per HF cache root on ``node``: per repo, the commits some live deployment there holds."""
    q = (select(Deployment.path, Repo.repo_id, Revision.commit_sha)
         .join(Component, Component.model_id == Deployment.model_id)
         .join(Revision, Revision.id == Component.revision_id).join(Repo, Repo.id == Revision.repo_id)
         .where(Deployment.node == node, Deployment.layout == "hf-cache", Deployment.removed_at.is_(None)))
    out: dict[str, dict[str, set[str]]] = {}
    for path, repo, commit in session.execute(q):
        p = Path(path)
        if len(p.parents) >= 3:
            out.setdefault(str(p.parents[2]), {}).setdefault(repo, set()).add(commit)
    return {root: {repo: frozenset(c) for repo, c in repos.items()} for root, repos in out.items()}


def _store_losses(reg: Registry, rows: Sequence[FleetRow], files: dict[int, list[ExpectedFile]]) -> list[StoreLoss]:
    seen: dict[str, bool] = {}
    out: list[StoreLoss] = []
    for row in rows:
        for f in files.get(row.model_id, ()):
            if f.sha256 not in seen:
                seen[f.sha256] = reg.store.path_for(f.sha256).is_file()
            if not seen[f.sha256]:
                out.append(StoreLoss(row.name, row.commit, f.repo, f.path, f.sha256))
    return out


def _verify_node(reg: Registry, node: str, models: Sequence[str], deep: bool) -> NodeVerification:
    with reg.catalog.reader() as session:
        rows = fleet_rows(session, FleetFilter(node=node, models=tuple(models)))
        files = expected_files(session, {r.model_id for r in rows})
        signatures = catalog_signatures(session, {r.model_id for r in rows})
        refs = expected_refs(session, {r.model_id for r in rows if r.layout == "hf-cache"})
        moved = _live_cache_commits(session, node)
    cache = deployed_stat_cache(reg.settings.home)
    losses = _store_losses(reg, rows, files)
    lost_by_model: dict[tuple[str, str], list[str]] = {}
    for loss in losses:
        lost_by_model.setdefault((loss.name, loss.commit), []).append(f"{loss.repo}/{loss.path}")
    checks: list[tuple[FleetRow, CopyCheck, str | None]] = []
    for row in rows:
        root = str(Path(row.path).parents[2]) if len(Path(row.path).parents) >= 3 else ""
        found = check_copy(row.layout, row.path, files.get(row.model_id, []), cache, deep=deep,
                           signed=row.model_id in signatures, refs=refs.get(row.model_id, {}),
                           moved=moved.get(root, {}))
        sig = check_copy_signature(Path(row.path), [f.path for f in files.get(row.model_id, []) if f.own],
                                   signatures.get(row.model_id))
        checks.append((row, found, sig))
    at = dt.datetime.now(dt.timezone.utc)
    by_state: dict[str, int] = {}
    updates = []
    for row, found, sig in checks:
        by_state[found.state] = by_state.get(found.state, 0) + 1
        drift = found.drift
        lost = tuple(lost_by_model.get((row.name, row.commit), ())[:MAX_LISTED])
        signature = sig.finding or (SIGNED if sig.state == SIGNED else None)
        detail = drift.to_json() if found.state != "ok" or lost or sig.finding else None
        if detail is not None:
            detail["store_lost"] = list(lost)
            if sig.finding:
                detail["signature"] = sig.detail
        updates.append({"did": row.deployment_id, "at": at, "by": reg.settings.actor, "host": reg.settings.host,
                        "vs": found.state, "vp": detail, "sig": signature})
    with reg.catalog.session() as session:
        if updates:
            # only rows still live: one undeployed meanwhile keeps its record as it was
            session.connection().execute(
                update(Deployment).where(Deployment.id == bindparam("did"), Deployment.removed_at.is_(None))
                .values(verified_at=bindparam("at"), verified_by=bindparam("by"), verified_host=bindparam("host"),
                        verify_state=bindparam("vs"), verify_problems=bindparam("vp"),
                        signature_state=bindparam("sig")),
                updates)
        bad = [{"deployment": r.deployment_id, "name": r.name, "commit": r.commit, "path": r.path,
                "state": c.state, "detail": c.drift.summary()[:500]} for r, c, _ in checks if c.state != "ok"]
        reg.log(session, "audit", node, node=node, deep=deep, deployments=len(checks), by_state=by_state,
                problems=bad[:100], store_lost=len(losses),
                files_hashed=sum(c.files_hashed for _, c, _ in checks))
    return NodeVerification(node, deep, at, reg.settings.actor, reg.settings.host, len(checks), by_state,
                            sum(c.files_checked for _, c, _ in checks), sum(c.files_hashed for _, c, _ in checks),
                            sum(c.bytes_hashed for _, c, _ in checks), tuple(losses))


def audit(reg: Registry, *, node: str | None = None, models: Sequence[str] = (), verify: bool = False,
          deep: bool = False) -> AuditReport:
    """The fleet's deployments (``node``: one node's); ``verify``/``deep``: check this node's copies first."""
    verification = None
    if verify or deep:
        node = node or reg.settings.host
        verification = _verify_node(reg, node, models, deep)
    flt = FleetFilter(node=node, models=tuple(models))
    with reg.catalog.reader() as session:
        rows = fleet_rows(session, flt)
        counts = fleet_counts(session, flt)
    return AuditReport(node, tuple(models), tuple(rows), counts, verification)
