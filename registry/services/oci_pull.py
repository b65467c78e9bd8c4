"""``registry pull oci://HOST/REPO[:TAG|@sha256:...]``: a model pushed as ModelPack artifacts, verified into the store.

1. The manifest (its digest checked), then each dependency artifact it names, by digest, from the same
   repository; every layer's media type, digest form and file path is checked before a byte is fetched.
2. The registry record layer (resolved manifest, lineage, smoke runs) and the config are read and must
   agree with each other and with the layers: every file of every component present with its sha256 and
   size (a missing one is ``IncompleteModel``), the root digest recomputed.
3. The layers stream into the store, hashed as they arrive (``.partial`` files resume with Range; a blob
   already stored is not fetched); sha256, size, blake3 and git sha1 must match the record.
4. Format checks, then ONE catalog transaction recording every model (bases first) as ``verified``; the
   CLI then registers as any pull does.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from collections.abc import Sequence
from typing import Any

from sqlalchemy import exc as sa_exc

from registry.catalog import states
from registry.catalog.models import Blob
from registry.errors import IncompleteModel, IntegrityError, SignatureError, StorageError, UsageError
from registry.fetch.progress import NullProgress, Progress
from registry.formats import check_files
from registry.hashing import blake3_file, lfs_pointer_oid
from registry.manifest.resolve import ResolvedManifest
from registry.oci.auth import Credentials
from registry.oci.client import BlobMissing, RegistryClient
from registry.oci.modelpack import MAX_DEPENDENCY_DEPTH, MAX_RECORD, PulledArtifact, parse_manifest, read_record
from registry.oci.reference import OciReference, parse_reference
from registry.services.add import ComponentSummary
from registry.services.bundle import add_smoke_runs, check_model_record
from registry.services.context import Registry
from registry.services.ingest import release_sharing
from registry.services.parallel import Stopped, Tally, run_all
from registry.services.record import RepoSource, record_model
from registry.services.signature_transfer import Pending, check_bundle_signatures, record_signatures
from registry.services.register import RegisterResult, register_after_ingest
from registry.store.blobs import BlobStore, BlobWriter

MAX_CONFIG = 1024 * 1024


@dataclass(frozen=True)
class OciPullResult:
    name: str
    revision: str  # the reference pulled, as given
    commit: str
    state: str
    family: str
    inferred: bool
    manifest_source: str | None
    root_digest: str
    reference: str  # oci://host/repo@sha256:... of the model's own artifact
    digest: str
    models: tuple[str, ...]  # every model recorded, bases first
    files: int
    bytes: int
    downloaded_files: int
    downloaded_bytes: int
    reused_files: int
    resumed_files: int
    components: tuple[ComponentSummary, ...]
    pickles: tuple[str, ...]
    dependencies: tuple[str, ...]  # digests of the dependency artifacts read
    ignored: tuple[str, ...] = ()  # an artifact holds only its model's files: nothing is left out
    released: tuple[str, ...] = ()  # other models released from a blob-caused quarantine by these bytes
    registration: RegisterResult | None = None  # how the registration step ended (ran, skipped and why)


def _refuse(where: str, why: str) -> IntegrityError:
    return IntegrityError(f"{where}: {why}; nothing was recorded", details={"artifact": where})


class _MemorySink:
    """A small blob (config, record) held in memory, capped."""

    def __init__(self, cap: int) -> None:
        self.data = bytearray()
        self._cap = cap

    @property
    def offset(self) -> int:
        return len(self.data)

    def write(self, chunk: bytes) -> None:
        if len(self.data) + len(chunk) > self._cap:
            raise IntegrityError(f"a metadata blob is larger than {self._cap} bytes", details={"cap": self._cap})
        self.data.extend(chunk)

    def restart(self) -> None:
        self.data.clear()


class _StoreSink:
    def __init__(self, store: BlobStore, sha256: str, size: int, git_sha1: str | None, stop: threading.Event,
                 *, resume: bool = True) -> None:
        self._store, self._sha, self._size, self._git, self._stop = store, sha256, size, git_sha1, stop
        self.writer = self._open(resume)
        self.resumed_from = self.writer.offset

    def _open(self, resume: bool) -> BlobWriter:
        return self._store.writer(expected_sha256=self._sha, expected_size=self._size, resume=resume,
                                  expected_git_sha1=self._git)

    @property
    def offset(self) -> int:
        return self.writer.offset

    def write(self, chunk: bytes) -> None:
        if self._stop.is_set():
            raise Stopped()
        self.writer.write(chunk)

    def restart(self) -> None:
        self.writer.abort(keep_partial=False)
        self.writer = self._open(False)


def _small_blob(client: RegistryClient, repository: str, digest: str, size: int, cap: int, where: str) -> bytes:
    if size > cap:
        raise _refuse(where, f"blob {digest} declares {size} bytes, more than the {cap} a metadata blob may have")
    sink = _MemorySink(cap)
    try:
        client.download_blob(repository, digest, size, sink)
    except BlobMissing as exc:
        raise IncompleteModel(f"{where}: blob {digest} is missing from the registry (404); nothing was recorded",
                              missing=[f"{where}: {digest}"]) from exc
    data = bytes(sink.data)
    if len(data) != size or "sha256:" + hashlib.sha256(data).hexdigest() != digest:
        raise _refuse(where, f"blob {digest} does not hash to its digest ({len(data)} bytes received, {size} "
                             "declared): the registry serves corrupt data")
    return data


@dataclass
class _Artifact:
    where: str
    parsed: PulledArtifact
    repo: str
    commit: str
    record: dict[str, Any] | None
    resolved: ResolvedManifest | None


def _read_artifact(client: RegistryClient, ref: OciReference, reference: str,
                   expect: tuple[str, str] | None) -> _Artifact:
    body, content_type = client.get_manifest(ref.repository, reference)
    where = f"{ref.host}/{ref.repository}" + (f"@{reference}" if reference.startswith("sha256:") else f":{reference}")
    parsed = parse_manifest(body, content_type, where)
    try:
        config = json.loads(_small_blob(client, ref.repository, parsed.config.digest, parsed.config.size, MAX_CONFIG,
                                        where))
        descriptor = config["descriptor"]
        repo, commit = str(descriptor["name"]), str(descriptor.get("revision", ""))
        diff_ids = list(config["modelfs"]["diffIds"])
    except (ValueError, KeyError, TypeError) as exc:
        raise _refuse(where, f"the config is not a ModelPack config ({type(exc).__name__}: {exc})") from exc
    layer_digests = [f"sha256:{f.sha256}" for f in parsed.files.values()]
    if parsed.record is not None:
        layer_digests.append(parsed.record.digest)
    if sorted(diff_ids) != sorted(layer_digests):
        raise _refuse(where, "the config's modelfs.diffIds do not list exactly the manifest's layers")
    if expect is not None and (repo, commit) != expect:
        raise _refuse(where, f"the dependency artifact is {repo}@{commit[:12]}, the referring manifest says "
                             f"{expect[0]}@{expect[1][:12]}")
    record = resolved = None
    if parsed.record is not None:
        raw = _small_blob(client, ref.repository, parsed.record.digest, parsed.record.size, MAX_RECORD, where)
        record = read_record(raw, where)
        try:
            resolved = check_model_record(record, lambda why: _refuse(where, why))
        except (KeyError, TypeError, ValueError) as exc:
            raise _refuse(where, f"the registry record is malformed ({type(exc).__name__}: {exc})") from exc
        if (record["name"], record["commit"]) != (repo, commit):
            raise _refuse(where, f"the registry record is for {record['name']}@{record['commit'][:12]}, the config "
                                 f"for {repo}@{commit[:12]}")
    return _Artifact(where, parsed, repo, commit, record, resolved)


def _read_all(client: RegistryClient, ref: OciReference) -> tuple[_Artifact, dict[tuple[str, str], _Artifact]]:
    top = _read_artifact(client, ref, ref.reference, None)
    if top.record is None:
        raise UsageError(f"{top.where} is a ModelPack artifact without a registry record layer (pushed by another "
                         "tool), so its components, roles and pins are unknown; push it with `registry push`, or pull "
                         "its files and `registry add` them with a manifest", details={"artifact": top.where})
    by_key: dict[tuple[str, str], _Artifact] = {(top.repo, top.commit): top}
    pending = [(d, 1) for d in top.parsed.dependencies]
    seen = {top.parsed.digest}
    while pending:
        dep, depth = pending.pop(0)
        if dep.digest in seen:
            continue
        if depth > MAX_DEPENDENCY_DEPTH:
            raise _refuse(top.where, f"dependencies nest deeper than {MAX_DEPENDENCY_DEPTH}")
        seen.add(dep.digest)
        art = _read_artifact(client, ref, dep.digest, (dep.repo, dep.commit))
        if (art.repo, art.commit) in by_key:
            raise _refuse(art.where, f"a second artifact for {art.repo}@{art.commit[:12]}")
        by_key[(art.repo, art.commit)] = art
        pending.extend((d, depth + 1) for d in art.parsed.dependencies)
    return top, by_key


@dataclass(frozen=True)
class _Need:
    sha256: str
    size: int
    blake3: str
    git_sha1: str | None  # a regular (non-LFS) file's git blob sha1, checked as it arrives
    label: str  # "role: repo/path", for errors


def _needs(by_key: dict[tuple[str, str], _Artifact]) -> dict[str, _Need]:
    """Every file of every record, matched against the layers of its repo@commit's artifact."""
    missing: list[str] = []
    needs: dict[str, _Need] = {}
    for art in by_key.values():
        if art.resolved is None:
            continue
        for c in art.resolved.components:
            holder = by_key.get((c.repo, c.commit))
            for f in c.files:
                label = f"{c.role}: {c.repo}/{f.path}"
                layer = holder.parsed.files.get(f.path) if holder is not None else None
                if layer is None:
                    missing.append(label)
                    continue
                if (layer.sha256, layer.size) != (f.sha256, f.size):
                    raise _refuse(holder.where, f"{label}: the layer is sha256:{layer.sha256} ({layer.size} bytes), "
                                                f"the record says sha256:{f.sha256} ({f.size} bytes)")
                if f.lfs and f.git_oid != lfs_pointer_oid(f.sha256, f.size):
                    raise _refuse(art.where, f"{label}: git oid {f.git_oid} is not the LFS pointer's of its sha256")
                prior = needs.get(f.sha256)
                if prior is not None and prior.blake3 != f.blake3:
                    raise _refuse(art.where, f"{label}: two blake3 digests recorded for one sha256")
                git = None if f.lfs else f.git_oid
                if prior is not None and prior.git_sha1 != git:
                    git = prior.git_sha1 or git
                needs[f.sha256] = _Need(f.sha256, f.size, f.blake3, git, label)
    if missing:
        top = next(iter(by_key.values()))
        raise IncompleteModel(f"{top.where}: the artifacts lack files their record requires; missing:\n  "
                              + "\n  ".join(missing) + "\nnothing was recorded", missing=missing)
    return needs


class _Fetcher:
    def __init__(self, reg: Registry, client: RegistryClient, repository: str, where: str, progress: Progress,
                 workers: int) -> None:
        self.reg, self.client, self.repository, self.where = reg, client, repository, where
        self.progress, self.workers = progress, workers
        self.stats = Tally()
        self.stop = threading.Event()

    def _check_stored(self, need: _Need) -> None:
        """A blob already in the store: its sha256 names its bytes; the record's other digests must agree."""
        with self.reg.catalog.reader() as session:
            row = session.get(Blob, need.sha256)
            known = (row.blake3, row.git_sha1) if row is not None else None
        path = self.reg.store.path_for(need.sha256)
        blake3 = known[0] if known else blake3_file(path)
        if blake3 != need.blake3:
            raise _refuse(self.where, f"{need.label}: the record says blake3 {need.blake3}, the bytes of sha256 "
                                      f"{need.sha256} have {blake3} (the record was tampered with)")
        if need.git_sha1 and need.size == path.stat().st_size:
            have = known[1] if known and known[1] else _git_sha1(path, need.size)
            if have != need.git_sha1:
                raise _refuse(self.where, f"{need.label}: the record says git sha1 {need.git_sha1}, the bytes have "
                                          f"{have}")

    def fetch(self, need: _Need) -> None:
        if self.stop.is_set():
            raise Stopped()
        if self.reg.store.has(need.sha256):
            self._check_stored(need)
            self.stats.add(reused_files=1)
            return
        try:
            self._attempt(need)
        except _BadPartial:
            self._attempt(need)  # the .partial of an earlier run was at fault: once more from byte 0

    def _attempt(self, need: _Need) -> None:
        sink = _StoreSink(self.reg.store, need.sha256, need.size, need.git_sha1, self.stop)
        if sink.writer.already_present:  # another process stored it while we waited for its lock
            sink.writer.abort(keep_partial=False)
            self._check_stored(need)
            self.stats.add(reused_files=1)
            return
        if sink.offset > need.size:
            sink.restart()
        received = 0

        def on_bytes(n: int) -> None:
            nonlocal received
            received += n
            self.progress.advance(need.sha256, n)

        self.progress.file_begin(need.sha256, need.label.split("/", 1)[-1], need.size, sink.offset)
        try:
            self.client.download_blob(self.repository, f"sha256:{need.sha256}", need.size, sink, on_bytes)
            stored = sink.writer.commit()
        except BlobMissing as exc:
            sink.writer.abort(keep_partial=False)
            raise IncompleteModel(f"{self.where}: the layer of {need.label} (sha256:{need.sha256}) is missing from the "
                                  "registry (404); nothing was recorded", missing=[need.label]) from exc
        except IntegrityError as exc:
            sink.writer.abort(keep_partial=False)
            if sink.resumed_from:
                raise _BadPartial() from exc
            raise IntegrityError(f"{self.where}: {need.label}: the bytes served do not match the layer's digest "
                                 f"({exc.message}); the registry or a proxy serves corrupt data (nothing was recorded)",
                                 details={"path": need.label, "sha256": need.sha256}) from exc
        except Stopped:
            # another layer failed: keep only what an earlier run had left (a resume point), not a fresh stub
            sink.writer.abort(keep_partial=sink.resumed_from > 0)
            raise
        except BaseException:
            sink.writer.abort(keep_partial=True)
            raise
        finally:
            self.progress.file_end(need.sha256)
        if stored.digests.blake3 != need.blake3:
            raise _refuse(self.where, f"{need.label}: blake3 is {stored.digests.blake3}, the record says {need.blake3} "
                                      "(the record was tampered with)")
        self.stats.add(downloaded_files=1, downloaded_bytes=received, resumed_files=1 if sink.resumed_from else 0)

    def fetch_all(self, needs: dict[str, _Need]) -> None:
        todo = sorted(needs.values(), key=lambda n: -n.size)  # large first: small ones fill the gaps
        self.progress.begin(sum(n.size for n in todo if not self.reg.store.has(n.sha256)), len(todo))
        try:
            run_all([lambda n=n: self.fetch(n) for n in todo], self.workers, self.stop, "oci-pull")
        finally:
            self.progress.end()


class _BadPartial(Exception):
    pass


def _git_sha1(path: Path, size: int) -> str:
    h = hashlib.sha1(b"blob %d\0" % size)
    with open(path, "rb") as f:
        while chunk := f.read(1024 * 1024):
            h.update(chunk)
    return h.hexdigest()


def _order(by_key: dict[tuple[str, str], _Artifact], top: _Artifact) -> list[_Artifact]:
    """Artifacts with records, the models they stand on first."""
    out: list[_Artifact] = []

    def visit(art: _Artifact) -> None:
        if art in out:
            return
        for dep in art.parsed.dependencies:
            child = by_key.get((dep.repo, dep.commit))
            if child is not None and child is not art:
                visit(child)
        if art.record is not None:
            out.append(art)

    visit(top)
    return out


def _record(reg: Registry, ordered: list[_Artifact], event: dict[str, Any], signatures: Sequence[Pending]) -> str:
    """One transaction for every model; a unique-key race with a concurrent pull retries."""
    for attempt in range(4):
        try:
            with reg.catalog.session() as session:
                state = states.VERIFIED
                for art in ordered:
                    m, resolved = art.record, art.resolved
                    assert m is not None and resolved is not None
                    sources = {s["repo"]: RepoSource(s["repo"], s["commit"], s["source"], tuple(s["refs"]))
                               for s in m["sources"]}
                    derived = [(l["relation"], RepoSource(l["repo"], l["commit"],
                                                          l.get("source") or event["reference"]))
                               for l in m["lineage"] if l["relation"] != "base"]
                    # a re-pull of the same bytes keeps what states.on_record keeps (registered, an own-fault quarantine)
                    model = record_model(session, resolved, sources, derived_from=derived)
                    model.family = m["family"]
                    add_smoke_runs(model, m["smoke_runs"])
                    state = model.state
                    reg.log(session, "oci.pull", m["name"], commit=m["commit"], root_digest=resolved.root_digest,
                            state=state, **event)
                record_signatures(session, signatures, reg.settings.actor)
                return state
        except (sa_exc.IntegrityError, sa_exc.OperationalError) as exc:
            if attempt == 3:
                raise StorageError(f"recording {ordered[-1].repo} in the catalog failed: {exc.orig}") from exc
            time.sleep(0.05 * (attempt + 1))
    raise AssertionError("unreachable")


def pull_oci(reg: Registry, reference: str, *, credentials: Credentials | None = None, insecure: bool = False,
             workers: int = 8, progress: Progress | None = None, retries: int = 5,
             backoff: float = 1.0, register: bool | None = False, device: str = "auto") -> OciPullResult:
    """``register`` as in ``register_after_ingest`` (the CLI passes None: REGISTRY_SMOKE decides)."""
    ref = parse_reference(reference)
    if workers < 1 or retries < 0 or backoff < 0:
        raise UsageError("workers must be at least 1; --retries and --backoff must not be negative")
    with RegistryClient(ref, credentials, insecure=insecure, retries=retries, backoff=backoff,
                        connections=workers + 2) as client:
        try:
            top, by_key = _read_all(client, ref)
            records = [art.record for art in by_key.values() if art.record is not None]
            # every carried signature must be over the records' digests, and a trust policy must be met, before a byte
            signatures = check_bundle_signatures(
                reg, {"signatures": [s for r in records for s in r.get("signatures", [])]}, records,
                origin=top.where, doing="OCI pull; nothing was recorded")
            needs = _needs(by_key)
            fetcher = _Fetcher(reg, client, ref.repository, top.where, progress or NullProgress(), workers)
            fetcher.fetch_all(needs)
        except (IntegrityError, IncompleteModel, SignatureError) as exc:
            reg.log_now("oci.pull.refused", reference, host=ref.host, repository=ref.repository,
                        error=type(exc).__name__, message=exc.message)
            raise
    pickles: list[str] = []
    for art in by_key.values():
        files = {p: reg.store.path_for(layer.sha256) for p, layer in art.parsed.files.items()
                 if layer.sha256 in needs}
        if files:
            pickles.extend(check_files(files, label=art.repo if art is not top else "").pickles)
    ordered = _order(by_key, top)
    assert top.resolved is not None and top.record is not None
    pinned = ref.with_digest(top.parsed.digest)
    state = _record(reg, ordered, {
        "reference": str(pinned), "host": ref.host, "repository": ref.repository, "tag": ref.tag,
        "digest": top.parsed.digest, "blobs": sorted(needs), "downloaded_files": fetcher.stats["downloaded_files"],
        "downloaded_bytes": fetcher.stats["downloaded_bytes"]}, signatures)
    resolved = top.resolved
    released = tuple(key for art in ordered if art.resolved is not None for key in release_sharing(reg, art.resolved))
    files = [f for c in resolved.components for f in c.files]
    st = fetcher.stats
    result = OciPullResult(
        name=resolved.name, revision=str(ref), commit=top.commit, state=state, family=top.record["family"],
        inferred=resolved.inferred, manifest_source=resolved.source, root_digest=resolved.root_digest,
        reference=str(pinned), digest=top.parsed.digest, models=tuple(a.repo for a in ordered), files=len(files),
        bytes=sum(f.size for f in files), downloaded_files=st["downloaded_files"],
        downloaded_bytes=st["downloaded_bytes"],
        reused_files=st["reused_files"], resumed_files=st["resumed_files"],
        components=tuple(ComponentSummary(c.role, c.repo, c.commit, len(c.files), sum(f.size for f in c.files),
                                          c.pinned) for c in resolved.components),
        pickles=tuple(sorted(set(pickles))),
        dependencies=tuple(d.digest for d in top.parsed.dependencies), released=released)
    registration = register_after_ingest(reg, result.name, result.commit, register=register, device=device)
    return dataclasses.replace(result, state=registration.state, registration=registration)
