"""``registry push NAME[@REV] oci://HOST/REPO[:TAG]``: a model as CNCF ModelPack artifacts in any OCI registry.

Plan from the catalog, then send: one artifact per repo@commit the model is made of (its own files; each
repo it depends on, an adapter's base, in an artifact of its own in the same repository, tagged
``dep-...`` and named by digest in the model's manifest). Each blob is sent at most once: HEAD in the
target repository, then a cross-repo mount from a repository of the same registry this catalog pushed
it to or pulled it from, then an upload streamed from the store (no re-hashing: the store's sha256 is
the layer digest). Manifests go last, dependencies before the model, so a tag never names an artifact
whose blobs or dependencies are missing. An unchanged model is one HEAD per artifact.
"""

from __future__ import annotations

import datetime as dt
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select

from registry.catalog.models import Event, Model
from registry.catalog.queries import find_model
from registry.errors import ConflictError, StorageError, UsageError
from registry.fetch.progress import NullProgress, Progress
from registry.hashing import CHUNK
from registry.oci.auth import Credentials
from registry.oci.client import RegistryClient
from registry.oci.modelpack import BuiltArtifact, Dependency, FileLayer, build_artifact, media_type_for
from registry.oci.reference import DEFAULT_TAG, parse_reference
from registry.services.bundle import STATES, model_record
from registry.services.signature_transfer import bundle_signatures
from registry.services.context import Registry
from registry.services.parallel import Stopped, Tally, run_all

MAX_CLOSURE = 10  # models an artifact may stand on, transitively (KitOps allows a chain of 10 as well)
OCI_EVENTS = ("oci.push", "oci.pull")


@dataclass(frozen=True)
class PushedArtifact:
    repo: str
    commit: str
    tag: str
    digest: str
    files: int
    bytes: int
    unchanged: bool  # the registry already had this manifest: nothing was sent


@dataclass(frozen=True)
class PushResult:
    name: str
    commit: str
    reference: str  # oci://host/repo@sha256:... of the model's own artifact
    tag: str
    digest: str
    artifacts: tuple[PushedArtifact, ...]  # dependencies first, the model last
    blobs: int
    present_blobs: int  # already in the target repository (HEAD)
    mounted_blobs: int  # linked from another repository of the same registry
    uploaded_blobs: int
    uploaded_bytes: int
    unchanged: bool


@dataclass
class _Unit:
    """The files of one repo@commit, and the model record that belongs to it when the catalog has one."""

    repo: str
    commit: str
    created_at: str
    files: dict[str, FileLayer] = field(default_factory=dict)
    record: dict[str, Any] | None = None
    needs: list[tuple[str, str]] = field(default_factory=list)  # other units the record's components use
    description: str = ""


def _rfc3339(value: dt.datetime) -> str:
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.timezone.utc)  # SQLite gives back naive UTC
    return value.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _plan(reg: Registry, spec: str) -> tuple[dict[tuple[str, str], _Unit], tuple[str, str]]:
    units: dict[tuple[str, str], _Unit] = {}
    with reg.catalog.reader() as session:
        top = find_model(session, spec)
        seen: set[int] = set()

        def visit(model: Model, depth: int) -> None:
            if model.id in seen:
                return
            if depth > MAX_CLOSURE:
                raise ConflictError(f"{top.name}: more than {MAX_CLOSURE} models deep in base models; not pushed")
            seen.add(model.id)
            if model.state not in STATES:
                reason = f" ({model.state_reason})" if model.state_reason else ""
                raise ConflictError(f"{model.name}@{model.revision.commit_sha[:12]} is {model.state}{reason}; only "
                                    "verified or registered models are pushed (nothing was sent)",
                                    details={"name": model.name, "state": model.state})
            for lineage in model.lineage:
                if lineage.parent_model is not None and lineage.parent_model.state in STATES:
                    visit(lineage.parent_model, depth + 1)
            own = (model.name, model.revision.commit_sha)
            for comp in model.components:
                rev = comp.revision
                key = (rev.repo.repo_id, rev.commit_sha)
                unit = units.setdefault(key, _Unit(key[0], key[1], _rfc3339(rev.created_at)))
                for f in comp.files:
                    if key == own or f.path not in unit.files:  # the owning model's role types the file
                        unit.files[f.path] = FileLayer(f.path, f.blob_sha256, f.size, media_type_for(comp.role, f.path),
                                                       model.inferred)
            unit = units.setdefault(own, _Unit(own[0], own[1], _rfc3339(model.revision.created_at)))
            unit.record = model_record(model)
            unit.description = (model.manifest or {}).get("description", "") or ""
            unit.needs = sorted({(c.revision.repo.repo_id, c.revision.commit_sha) for c in model.components} - {own})

        visit(top, 0)
        top_key = (top.name, top.revision.commit_sha)
    for unit in units.values():
        if unit.record is not None:
            # the model's signatures travel in its record, as in a bundle: a pull checks them and its trust policy
            unit.record["signatures"] = bundle_signatures(reg, [unit.record])
    missing = sorted({f.sha256 for u in units.values() for f in u.files.values() if not reg.store.has(f.sha256)})
    if missing:
        raise StorageError(f"{len(missing)} blob(s) of {spec} are not in the store (first: {missing[0]}); run "
                           "`registry verify` (nothing was pushed)", details={"missing": missing})
    return units, top_key


_TAG_SAFE = re.compile(r"[^a-z0-9._-]+")


def dependency_tag(repo: str, commit: str, digest: str) -> str:
    """A tag per dependency artifact, so that registries which collect untagged manifests keep it; it never moves
    (it ends in the manifest's digest)."""
    slug = _TAG_SAFE.sub("-", repo.lower().replace("/", "-")).strip(".-")[:90] or "repo"
    return f"dep-{slug}-{commit[:12]}-{digest[7:19]}"


def _build(units: dict[tuple[str, str], _Unit], top_key: tuple[str, str]) -> list[BuiltArtifact]:
    """Artifacts bottom-up: a unit's dependencies are built (and their digests known) before it."""
    built: dict[tuple[str, str], BuiltArtifact] = {}
    order: list[BuiltArtifact] = []

    def build(key: tuple[str, str], path: tuple[tuple[str, str], ...]) -> BuiltArtifact:
        if key in built:
            return built[key]
        if key in path:
            raise ConflictError(f"{key[0]}@{key[1][:12]} depends on itself through {', '.join(k[0] for k in path)}")
        unit = units[key]
        deps = [build(k, (*path, key)) for k in unit.needs if k in units]
        artifact = build_artifact(
            repo=unit.repo, commit=unit.commit, created_at=unit.created_at, files=list(unit.files.values()),
            record=unit.record, description=unit.description,
            dependencies=[Dependency(d.repo, d.commit, d.digest) for d in deps])
        built[key] = artifact
        order.append(artifact)
        return artifact

    build(top_key, ())
    return order


def _mount_sources(reg: Registry, host: str, repository: str) -> dict[str, list[str]]:
    """Repositories of the same registry that hold a blob, as this catalog's push and pull events say."""
    sources: dict[str, list[str]] = {}
    with reg.catalog.reader() as session:
        for details in session.scalars(select(Event.details).where(Event.action.in_(OCI_EVENTS))
                                       .order_by(Event.id.desc())):
            if not isinstance(details, dict) or details.get("host") != host or details.get("repository") == repository:
                continue
            for sha in details.get("blobs") or ():
                repos = sources.setdefault(sha, [])
                if details["repository"] not in repos and len(repos) < 3:
                    repos.append(details["repository"])
    return sources


class _Sender:
    def __init__(self, reg: Registry, client: RegistryClient, repository: str, progress: Progress, workers: int,
                 mounts: dict[str, list[str]]) -> None:
        self.reg, self.client, self.repository, self.progress, self.workers = reg, client, repository, progress, workers
        self.mounts = mounts
        self.counts = Tally()
        self.stop = threading.Event()
        self.sent: set[str] = set()  # digests known to be in the target repository

    def _chunks(self, digest: str, data: bytes | None) -> Iterator[bytes]:
        if data is not None:
            yield data
            self.progress.advance(digest, len(data))
            return
        with self.reg.store.open(digest[7:]) as f:
            while chunk := f.read(CHUNK):
                if self.stop.is_set():
                    raise Stopped()
                yield chunk
                self.progress.advance(digest, len(chunk))

    def send_blob(self, digest: str, size: int, data: bytes | None) -> None:
        if self.stop.is_set():
            raise Stopped()
        if self.client.has_blob(self.repository, digest):
            self.counts.add(present=1)
            return
        for source in self.mounts.get(digest[7:], ()):
            if self.client.mount_blob(self.repository, digest, source):
                self.counts.add(mounted=1)
                return
        self.progress.file_begin(digest, digest[7:19], size, 0)
        try:
            self.client.upload_blob(self.repository, digest, size, lambda: self._chunks(digest, data))
        finally:
            self.progress.file_end(digest)
        self.counts.add(uploaded=1, uploaded_bytes=size)

    def send(self, artifact: BuiltArtifact) -> None:
        blobs: dict[str, tuple[int, bytes | None]] = {d: (len(b), b) for d, b in artifact.inline_blobs().items()}
        for f in artifact.files:
            blobs.setdefault(f"sha256:{f.sha256}", (f.size, None))
        todo = sorted(((d, s, b) for d, (s, b) in blobs.items() if d not in self.sent), key=lambda t: -t[1])
        self.progress.begin(sum(s for _, s, _ in todo), len(todo))
        try:
            run_all([lambda t=t: self.send_blob(*t) for t in todo], self.workers, self.stop, "oci-push")
        finally:
            self.progress.end()
        self.sent.update(d for d, _, _ in todo)


def push_model(reg: Registry, spec: str, target: str, *, credentials: Credentials | None = None,
               insecure: bool = False, workers: int = 4, progress: Progress | None = None, retries: int = 5,
               backoff: float = 1.0) -> PushResult:
    ref = parse_reference(target)
    if ref.digest:
        raise UsageError(f"{target}: push to a tag (oci://HOST/REPO[:TAG]), not a digest: the digest is what the "
                         "push computes", details={"reference": target})
    if workers < 1:
        raise UsageError("workers must be at least 1")
    tag = ref.tag or DEFAULT_TAG
    units, top_key = _plan(reg, spec)
    artifacts = _build(units, top_key)
    progress = progress or NullProgress()
    with RegistryClient(ref, credentials, insecure=insecure, retries=retries, backoff=backoff,
                        connections=workers + 2) as client:
        sender = _Sender(reg, client, ref.repository, progress, workers, _mount_sources(reg, ref.host, ref.repository))
        pushed: list[PushedArtifact] = []
        for artifact in artifacts:
            own_tag = tag if (artifact.repo, artifact.commit) == top_key else \
                dependency_tag(artifact.repo, artifact.commit, artifact.digest)
            unchanged = client.manifest_digest(ref.repository, artifact.digest, scope=None) == artifact.digest
            if not unchanged:
                sender.send(artifact)
                client.put_manifest(ref.repository, own_tag, artifact.manifest)
            elif client.manifest_digest(ref.repository, own_tag) != artifact.digest:
                client.put_manifest(ref.repository, own_tag, artifact.manifest)  # the bytes are there; (re)tag
            pushed.append(PushedArtifact(artifact.repo, artifact.commit, own_tag, artifact.digest, len(artifact.files),
                                         sum(f.size for f in artifact.files), unchanged))
    counts = sender.counts
    uploaded, uploaded_bytes, mounted = counts["uploaded"], counts["uploaded_bytes"], counts["mounted"]
    top = artifacts[-1]
    all_blobs = sorted({f.sha256 for a in artifacts for f in a.files}
                       | {d[7:] for a in artifacts for d in a.inline_blobs()})
    result = PushResult(
        name=top_key[0], commit=top_key[1], reference=str(ref.with_digest(top.digest)), tag=tag, digest=top.digest,
        artifacts=tuple(pushed), blobs=len(all_blobs), present_blobs=counts["present"], mounted_blobs=mounted,
        uploaded_blobs=uploaded, uploaded_bytes=uploaded_bytes, unchanged=all(p.unchanged for p in pushed))
    with reg.catalog.session() as session:
        reg.log(session, "oci.push", result.name, commit=result.commit, host=ref.host, repository=ref.repository,
                tag=tag, digest=top.digest, artifacts=[{"repo": p.repo, "commit": p.commit, "tag": p.tag,
                                                        "digest": p.digest} for p in pushed],
                uploaded_blobs=uploaded, uploaded_bytes=uploaded_bytes, mounted_blobs=mounted,
                blobs=all_blobs)
    return result
