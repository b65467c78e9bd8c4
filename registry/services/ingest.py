"""The one ingest pipeline behind ``registry add`` and ``registry pull`` (docs/pull.md, "One pipeline").

The two differ only in where bytes come from (a local folder, staged and hashed; or an upstream, downloaded
into the store and hashed as they arrive). Every other step, and the rule for each case, is here:

1. **plan**: the manifest's selection over each repo's listing;
2. **check the plan** before a byte moves: every required file present (``IncompleteModel``, exit 4); sizes
   and published digests as the manifest pins them (``IntegrityError``, exit 5); what the load gate will ask
   (the family's own files, the curated manifest's roles: exit 4, so ingest never records what the gate
   refuses); and that **a name keeps its kind** (``ConflictError``, exit 9);
3. **acquire** the bytes (the source's job), then check them: the manifest's pinned sha256 and the format
   checks (as soon as the bytes can be read: before copying for ``add``, after the download for ``pull``);
4. **lock and record** in one transaction with the state rule of ``registry.catalog.states``, then release
   every other model whose blob-caused quarantine these proven bytes lift;
5. **register** (the smoke), unless told not to: ``registry.services.register.register_after_ingest``.

Files of the source that the manifest does not select (an ONNX export, a second weight format such as a
``pytorch_model.bin`` beside a safetensors index, training checkpoints) are not part of the model: they are
neither stored nor checked nor served, and the result lists them (``ignored``). A refusal records nothing
but its own ``add.refused`` / ``pull.refused`` event.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import exc as sa_exc
from sqlalchemy import select as sa_select

from registry.catalog.models import Model
from registry.errors import ConflictError, IncompleteModel, IntegrityError, RegistryError, StorageError
from registry.formats import check_files
from registry.killpoints import killpoint
from registry.manifest.resolve import LockedFile, ResolvedManifest, Selection
from registry.manifest.schema import Manifest
from registry.services.context import Registry
from registry.services.record import RepoSource, record_model

# Roles that make a model the kind of model it is: a new revision without them is another kind of model.
KIND_ROLES = {"adapter": "an adapter", "head": "heads", "visual": "a visual module"}


@dataclass(frozen=True)
class Plan:
    name: str
    manifest: Manifest
    selections: tuple[Selection, ...]
    explicit: bool                 # the manifest came from --manifest: it may change the name's kind
    own_paths: tuple[str, ...]     # every file the source holds for the model's own repo

    @property
    def ignored(self) -> tuple[str, ...]:
        taken = {p for s in self.selections if s.component.repo == self.name for p in s.paths}
        return tuple(sorted(p for p in self.own_paths if p not in taken))


@dataclass(frozen=True)
class Acquired:
    """Every selected file's bytes, proven against its listing."""

    locked: Mapping[tuple[str, str], LockedFile]  # (repo, path) -> digests
    readable: Mapping[str, Mapping[str, Path]]     # repo -> path -> where its bytes can be read now
    problems: tuple[str, ...] = ()                 # ways the bytes contradict what the source claimed


@dataclass(frozen=True)
class Recorded:
    resolved: ResolvedManifest
    commit: str
    state: str
    pickles: tuple[str, ...]
    new_blobs: int
    released: tuple[str, ...]  # other models whose blob-caused quarantine these bytes lifted


class Source(ABC):
    """Where one ingest's bytes come from."""

    action: str  # "add" or "pull": the event names

    @abstractmethod
    def describe(self, plan: Plan) -> str:
        """What is being ingested, for messages: a folder, or ``name@commit``."""

    def missing(self, plan: Plan) -> list[str]:
        """``role: file`` the source knows to be missing beyond the selection (add: other repos' blobs)."""
        return []

    def readable_now(self, plan: Plan) -> Mapping[str, Mapping[str, Path]] | None:
        """The selected files' bytes, if they can be read before they are acquired (None: after)."""
        return None

    @abstractmethod
    def acquire(self, plan: Plan) -> Acquired:
        """Bring the selected bytes in, hashing them."""

    @abstractmethod
    def locate(self, plan: Plan, locked: Mapping[tuple[str, str], LockedFile]
               ) -> tuple[ResolvedManifest, dict[str, RepoSource]]:
        """The resolved manifest at the commits this source knows, and where each repo came from."""

    def keep(self) -> int:
        """Make the acquired bytes permanent (before the catalog row that claims them); returns new blobs."""
        return 0

    def release(self) -> None:
        """Drop whatever was acquired and not kept."""

    @abstractmethod
    def event(self, plan: Plan, resolved: ResolvedManifest, commit: str) -> dict[str, Any]:
        """The details of the ``add`` / ``pull`` event."""

    def context(self) -> dict[str, Any]:
        """What a refusal event records besides the error."""
        return {}


def run(reg: Registry, source: Source, plan: Plan,
        approve: Callable[[ResolvedManifest], None] | None = None) -> Recorded:
    """``approve`` (a signature or trust check) sees the resolved model last and may refuse it: nothing is kept
    or recorded then."""
    try:
        check_plan(reg, plan, source)
        early = source.readable_now(plan)
        pickles = check_formats(plan, early) if early is not None else ()
        acquired = source.acquire(plan)
        killpoint(f"{source.action}:after-staging")  # add: staged in tmp/<op>/; pull: downloaded, in place
        try:
            if acquired.problems:
                raise IntegrityError("files do not match the manifest's digests:\n  " + "\n  ".join(acquired.problems),
                                     details={"mismatched": list(acquired.problems)})
            check_pins(plan, acquired.locked)
            if early is None:
                pickles = check_formats(plan, acquired.readable)
            resolved, sources = source.locate(plan, acquired.locked)
            if approve is not None:
                approve(resolved)
            new_blobs = source.keep()
            killpoint(f"{source.action}:after-blob-rename")  # blobs under their names, the catalog not told
        finally:
            source.release()
    except (IncompleteModel, IntegrityError, ConflictError) as exc:
        log_refusal(reg, source.action, plan.name, exc, **source.context())
        raise
    commit = sources[plan.name].commit
    state = record(reg, source.action, resolved, sources, source.event(plan, resolved, commit))
    killpoint(f"{source.action}:after-commit")
    released = release_sharing(reg, resolved)
    return Recorded(resolved, commit, state, pickles, new_blobs, released)


def log_refusal(reg: Registry, action: str, name: str, exc: RegistryError, **context: Any) -> None:
    """The one record a refused ingest leaves: an ``add.refused`` / ``pull.refused`` event."""
    details: dict[str, Any] = {"error": type(exc).__name__, "message": exc.message}
    for key in ("missing", "mismatched", "signature", "problems"):
        if exc.details.get(key):
            details[key] = exc.details[key]
    if exc.kind == "format":
        details["format"] = exc.message
    reg.log_now(f"{action}.refused", name, **context, **details)


# ---- step 2: the plan --------------------------------------------------------------------------------

def check_plan(reg: Registry, plan: Plan, source: Source) -> None:
    from registry.services.load import curated_roles, missing_for

    what = source.describe(plan)
    missing = [m for s in plan.selections for m in s.missing] + source.missing(plan)
    if not missing:  # the manifest is satisfied: then what the gate asks beyond it (family, curated roles)
        parts = [(s.component.role, s.component.repo, s.component.required, s.paths) for s in plan.selections]
        missing = missing_for(plan.manifest.family, parts, curated_roles(reg, plan.name))
    if missing:
        raise IncompleteModel(
            f"{what} does not satisfy the manifest of {plan.name} ({plan.manifest.source}); missing:\n  "
            + "\n  ".join(missing),
            missing=missing, details={"manifest": plan.manifest.source},
        )
    mismatched = [m for s in plan.selections for m in s.mismatched]
    if mismatched:
        raise IntegrityError(f"{what} contradicts the manifest:\n  " + "\n  ".join(mismatched),
                             details={"mismatched": mismatched})
    check_kind(reg, plan)


def check_kind(reg: Registry, plan: Plan) -> None:
    """A name keeps its kind: a revision without the adapter (heads, visual module) that the name's recorded
    revisions have is another model, and moving ``main`` to it would serve that model under this name (a bare
    base loads without a word and gives untrained outputs: failure 000). Only ``--manifest`` may say so."""
    if plan.explicit:
        return
    have = {s.component.role for s in plan.selections if s.paths}
    with reg.catalog.reader() as session:
        recorded = session.execute(
            sa_select(Model.manifest).where(Model.name == plan.name).order_by(Model.id)).scalars().all()
    had: dict[str, tuple[str, list[str]]] = {}
    for manifest in recorded:
        for comp in manifest.get("components", ()):
            if comp["role"] in KIND_ROLES and comp["role"] not in have and comp["role"] not in had:
                had[comp["role"]] = (comp["commit"], [f["path"] for f in comp["files"]])
    if not had:
        return
    kinds = " and ".join(KIND_ROLES[r] for r in had)
    lacks = "; ".join(f"{role}: {', '.join(paths)} (recorded at {commit[:12]})" for role, (commit, paths) in had.items())
    raise ConflictError(
        f"{plan.name} is recorded with {kinds}, and this revision has none ({lacks}); recording it under the same "
        f"name would make `{plan.name}` a different kind of model (a base without its adapter loads silently and "
        f"is untrained). Add it under another name, or pass --manifest to say explicitly that {plan.name} is now "
        "this kind of model",
        details={"name": plan.name, "had": sorted(had), "missing": [f"{r}: {p}" for r, (_, ps) in had.items()
                                                                     for p in ps]},
    )


# ---- step 3: the bytes -------------------------------------------------------------------------------

def check_pins(plan: Plan, locked: Mapping[tuple[str, str], LockedFile]) -> None:
    """The sha256 the manifest pins, for files whose digest the listing did not publish."""
    bad = []
    for sel in plan.selections:
        for spec in sel.component.files:
            got = locked.get((sel.component.repo, spec.path))
            if got is not None and spec.sha256 and got.sha256 != spec.sha256:
                where = spec.path if sel.component.repo == plan.name else f"{sel.component.repo}/{spec.path}"
                bad.append(f"{sel.component.role}: {where}: sha256 is {got.sha256}, the manifest expects {spec.sha256}")
    if bad:
        raise IntegrityError("files do not match the manifest's pinned digests:\n  " + "\n  ".join(bad),
                             details={"mismatched": bad})


def check_formats(plan: Plan, readable: Mapping[str, Mapping[str, Path]]) -> tuple[str, ...]:
    """Format checks over the selected files of each repo; returns the pickle files (never unpickled)."""
    pickles: list[str] = []
    for repo, files in readable.items():
        wanted = {p: files[p] for s in plan.selections if s.component.repo == repo for p in s.paths}
        pickles.extend(check_files(wanted, label="" if repo == plan.name else repo).pickles)
    return tuple(sorted(set(pickles)))


# ---- step 4: record ----------------------------------------------------------------------------------

def record(reg: Registry, action: str, resolved: ResolvedManifest, sources: dict[str, RepoSource],
           event: dict[str, Any]) -> str:
    """One transaction. Two ingests of the same model at once converge: a unique-key race (or a Postgres
    deadlock, a busy SQLite) retries, and the loser finds the winner's rows."""
    for attempt in range(4):
        try:
            with reg.catalog.session() as session:
                model = record_model(session, resolved, sources)
                reg.log(session, action, resolved.name, **event, state=model.state)
                return model.state
        except (sa_exc.IntegrityError, sa_exc.OperationalError) as exc:
            if attempt == 3:
                raise StorageError(f"recording {resolved.name} in the catalog failed: {exc.orig}") from exc
            time.sleep(0.05 * (attempt + 1))
    raise AssertionError("unreachable")


def release_sharing(reg: Registry, resolved: ResolvedManifest) -> tuple[str, ...]:
    """Other models (other names, other revisions) quarantined for a blob that this ingest has just proven
    are released once every one of their blobs checks out (a fast verify of theirs)."""
    from registry.services.verify import release_proven

    return release_proven(reg, {f.sha256 for c in resolved.components for f in c.files})


def summaries(resolved: ResolvedManifest) -> tuple[ComponentSummary, ...]:
    return tuple(ComponentSummary(c.role, c.repo, c.commit, len(c.files), sum(f.size for f in c.files), c.pinned)
                 for c in resolved.components)


def totals(resolved: ResolvedManifest) -> tuple[int, int]:
    files = [f for c in resolved.components for f in c.files]
    return len(files), sum(f.size for f in files)


@dataclass(frozen=True)
class ComponentSummary:
    role: str
    repo: str
    commit: str
    files: int
    bytes: int
    pinned: bool


def selected(plan: Plan) -> Iterable[tuple[str, str]]:
    """(repo, path) of every selected file, in manifest order."""
    for sel in plan.selections:
        for p in sel.paths:
            yield sel.component.repo, p


def make_plan(name: str, manifest: Manifest, selections: Sequence[Selection], *, explicit: bool,
              own_paths: Iterable[str]) -> Plan:
    return Plan(name, manifest, tuple(selections), explicit, tuple(sorted(own_paths)))

