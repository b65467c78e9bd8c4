"""``registry pull REPO_ID``: a complete, verified snapshot from the Hub or an HF-compatible mirror.

Plan, then execute, then record:
1. resolve the revision to a commit and read the tree (sizes, LFS sha256, git oids);
2. choose the manifest (``--manifest``, curated, or inferred from the tree and small JSON files) and
   resolve every repo it depends on (an adapter's base, a cross-repo tokenizer) the same way;
3. download exactly the selected files straight into the store, hashing while bytes arrive; a blob
   whose sha256 is already stored is never fetched again; every file's size and sha256 (LFS) or
   git blob sha1 (regular files) must match the tree before it is kept;
4. format checks, then ONE catalog transaction recording the model as ``verified``.
Nothing is recorded before every byte is proven, so a pull killed at any moment claims nothing; its
``.partial`` files let the next run resume with HTTP Range.
"""

from __future__ import annotations

import dataclasses
import os
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import select as sa_select

from registry.catalog import states
from registry.catalog.models import Blob
from registry.catalog.queries import find_model
from registry.errors import (
    ConflictError, EndpointUnreachable, IncompleteModel, IntegrityError, ModelNotFound, NotFound, UsageError,
)
from registry.fetch.hub import HubClient, RemoteFile, RemoteRepo
from registry.fetch.progress import NullProgress, Progress
from registry.formats import PICKLE_SUFFIXES
from registry.hashing import SHA1_RE, blake3_file
from registry.manifest.filters import filter_selections
from registry.manifest.infer import BaseLookup, RepoView
from registry.manifest.jsonread import expected_type, parse_json
from registry.manifest.resolve import LockedFile, RepoFile, ResolvedManifest, Selection, first_use_note, lock, select
from registry.manifest.schema import REPO_ID_RE, Manifest
from registry.paths import require_ref
from registry.services.context import Registry
from registry.services.ingest import (
    Acquired, ComponentSummary, Plan, Source, log_refusal, make_plan, selected, summaries, totals,
)
from registry.services.ingest import run as ingest_run
from registry.services.leasing import leased
from registry.services.manifests import choose_manifest, missing_repo_selection
from registry.services.record import RepoSource
from registry.services.register import RegisterResult, register_after_ingest
from registry.services.signature_transfer import pulled_signatures, record_pulled
from registry.services.trust import require_trusted
from registry.store import ExpectedBlob, check_blobs
from registry.store.blobs import BlobStore, BlobWriter

SMALL_JSON = 4 * 1024 * 1024  # read_json for inference fetches only small JSON files
FLUSH_EVERY = 64 * 1024 * 1024  # large downloads are written back to disk in steps of this many bytes


@dataclass(frozen=True)
class PullResult:
    name: str
    revision: str
    commit: str
    state: str
    family: str
    inferred: bool
    manifest_source: str | None
    root_digest: str
    endpoint: str
    files: int
    bytes: int
    downloaded_files: int
    downloaded_bytes: int
    reused_files: int  # already in the store (same sha256, from any repo): not downloaded
    resumed_files: int  # continued from a .partial left by an earlier run
    components: tuple[ComponentSummary, ...]
    pickles: tuple[str, ...]
    offline: bool = False  # served from the store without the network
    note: str = ""
    family_rule: str = ""  # "family bge-m3: colbert_linear.pt present"
    disagreements: tuple[str, ...] = ()  # where the name or a curated manifest and the files disagreed
    ignored: tuple[str, ...] = ()    # files of the repo's tree that the manifest does not select (not pulled)
    released: tuple[str, ...] = ()   # other models released from a blob-caused quarantine by these bytes
    registration: RegisterResult | None = None  # how the registration step ended (ran, skipped and why)


@dataclass
class _Stats:
    downloaded_files: int = 0
    downloaded_bytes: int = 0
    reused_files: int = 0
    resumed_files: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, **counts: int) -> None:
        with self.lock:
            for k, v in counts.items():
                setattr(self, k, getattr(self, k) + v)


class _Stopped(Exception):
    """Another file of the same pull failed: stop this one (its partial is kept)."""


class _BadPartial(Exception):
    """A resumed download failed its digest: the partial from the earlier run was at fault or the upstream."""


# ---- sinks: where downloaded bytes go ----------------------------------------------------------------

class _Flusher:
    """Write a large download back to disk while it still arrives: every FLUSH_EVERY bytes a helper
    thread fdatasyncs the partial file (Linux syncs the inode, whichever descriptor wrote it). The
    fsync that must precede the blob's rename then finds little left, instead of the whole file: the
    disk works during the transfer, not after it. Best effort; commit() still fsyncs for real."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._pending = 0
        self._thread: threading.Thread | None = None

    def wrote(self, n: int) -> None:
        self._pending += n
        if self._pending >= FLUSH_EVERY and (self._thread is None or not self._thread.is_alive()):
            self._pending = 0
            self._thread = threading.Thread(target=self._flush, name="pull-flush", daemon=True)
            self._thread.start()

    def _flush(self) -> None:
        try:
            fd = os.open(self._path, os.O_RDONLY)
        except OSError:
            return
        try:
            os.fdatasync(fd)
        except OSError:
            pass
        finally:
            os.close(fd)

    def join(self) -> None:
        if self._thread is not None:
            self._thread.join()


class _Sink:
    """One file's bytes into the store. Subclasses say how the writer opens and what else sees each chunk."""

    resumed_from = 0

    def __init__(self, store: BlobStore, file: RemoteFile, stop: threading.Event) -> None:
        self._store, self._file, self._stop = store, file, stop
        self.writer = self._open(resume=True)

    def _open(self, *, resume: bool) -> BlobWriter:
        raise NotImplementedError

    def _observe(self, chunk: bytes) -> None:
        pass

    @property
    def offset(self) -> int:
        return self.writer.offset

    def write(self, chunk: bytes) -> None:
        if self._stop.is_set():
            raise _Stopped()
        self.writer.write(chunk)
        self._observe(chunk)

    def restart(self) -> None:
        self.writer.abort(keep_partial=False)
        self.writer = self._open(resume=False)


class _LfsSink(_Sink):
    """An LFS file: the sha256 is known, so bytes go to ``<sha>.partial`` and resume across runs."""

    def __init__(self, store: BlobStore, file: RemoteFile, stop: threading.Event) -> None:
        super().__init__(store, file, stop)
        self.resumed_from = self.writer.offset
        self.flusher = _Flusher(self.writer.path)

    def _open(self, *, resume: bool) -> BlobWriter:
        return self._store.writer(expected_sha256=self._file.sha256, expected_size=self._file.size, resume=resume)

    def _observe(self, chunk: bytes) -> None:
        self.flusher.wrote(len(chunk))


class _RegularSink(_Sink):
    """A regular (non-LFS) file: only its git blob sha1 is published; the writer checks it before the blob is kept."""

    def _open(self, *, resume: bool) -> BlobWriter:
        return self._store.writer(expected_sha256=None, expected_size=self._file.size,
                                  expected_git_sha1=self._file.oid)


# ---- the downloader ---------------------------------------------------------------------------------

def _key(file: RemoteFile) -> str:
    """Files with the same content are fetched once: LFS by sha256, regular files by git oid."""
    return f"sha256:{file.sha256}" if file.sha256 else f"git:{file.oid}"


class _Downloader:
    def __init__(self, reg: Registry, client: HubClient, progress: Progress, workers: int) -> None:
        self.reg, self.client, self.progress, self.workers = reg, client, progress, workers
        self.store = reg.store
        self.stats = _Stats()
        self.stop = threading.Event()
        self._done: dict[str, tuple[str, str]] = {}  # key -> (sha256, blake3)
        self._known: dict[str, tuple[str, str]] = {}  # catalog: git oid / sha256 -> (sha256, blake3)
        self._intact: dict[str, bool] = {}  # sha256 -> the stored blob still holds its bytes

    def load_known(self, files: Iterable[RemoteFile]) -> None:
        """Digests the catalog already has, so stored blobs are reused without a byte of network."""
        files = list(files)
        oids = {f.oid for f in files if not f.lfs} - {k[4:] for k in self._known if k.startswith("git:")}
        shas = {f.sha256 for f in files if f.lfs} - set(self._known)
        if not oids and not shas:
            return
        with self.reg.catalog.reader() as session:
            rows = session.execute(
                sa_select(Blob.sha256, Blob.blake3, Blob.git_sha1)
                .where(Blob.git_sha1.in_(oids) | Blob.sha256.in_(shas))
            ).all()
        for sha, b3, git in rows:
            self._known[sha] = (sha, b3)
            if git:
                self._known[f"git:{git}"] = (sha, b3)

    def check_stored(self, files: Iterable[RemoteFile]) -> None:
        """A stored blob is reused only while it holds its bytes (a fast verify: the stat cache, else blake3),
        so a blob that rotted in the store is fetched again and the proven copy replaces it."""
        expected = {}
        for f in files:
            known = self._known.get(f.sha256 or "") if f.lfs else self._known.get(f"git:{f.oid}")
            if known is not None and known[0] not in self._intact:
                expected[known[0]] = ExpectedBlob(known[0], f.size, known[1])
        for check in check_blobs(self.store, self.reg.stat_cache, list(expected.values()), deep=False):
            self._intact[check.sha256] = check.status == "ok"

    def _reuse(self, file: RemoteFile) -> tuple[str, str] | None:
        if file.lfs:
            sha = file.sha256
            assert sha is not None
            if not self.store.has(sha):
                return None
            if sha not in self._known:  # stored by a pull that was not recorded: its blake3 is still cheap
                self._known[sha] = (sha, blake3_file(self.store.path_for(sha)))
                self._intact[sha] = True  # its sha256 was proven when it was stored, and nothing records it
        known = self._known.get(file.sha256 or "") if file.lfs else self._known.get(f"git:{file.oid}")
        if known is None or not self.store.has(known[0]):
            return None
        if known[0] not in self._intact:
            self.check_stored([file])
        return known if self._intact[known[0]] else None

    def fetch(self, repo: RemoteRepo, file: RemoteFile) -> LockedFile:
        """Make sure ``file``'s bytes are in the store and proven; returns its locked record."""
        key = _key(file)
        got = self._done.get(key) or self._reuse(file)
        if got is not None:
            if key not in self._done:
                self.stats.add(reused_files=1)
                self._done[key] = got
        else:
            got = self._download(repo, file)
            self._done[key] = got
        return LockedFile(file.path, file.size, got[0], got[1], file.oid, file.lfs)

    def _download(self, repo: RemoteRepo, file: RemoteFile) -> tuple[str, str]:
        try:
            return self._attempt(repo, file)
        except _BadPartial:
            # A .partial from an earlier run did not add up (written by a corrupt upstream, or damaged on
            # disk); it is deleted now, so one more try from byte 0 says whether the upstream is at fault.
            return self._attempt(repo, file)

    def _attempt(self, repo: RemoteRepo, file: RemoteFile) -> tuple[str, str]:
        where = f"{repo.repo_id}@{repo.commit[:12]}: {file.path}"
        sink: _Sink = (_LfsSink if file.lfs else _RegularSink)(self.store, file, self.stop)
        if isinstance(sink, _LfsSink) and sink.writer.already_present and self._intact.get(file.sha256 or "") is not False:
            # another process finished this blob while we waited for its lock (we still hold it, so the
            # empty partial the writer opened is ours alone to delete)
            sink.writer.abort(keep_partial=False)
            self.stats.add(reused_files=1)
            assert file.sha256 is not None
            return file.sha256, blake3_file(self.store.path_for(file.sha256))
        if sink.offset > file.size:
            sink.restart()  # a partial longer than the file cannot be a prefix of it
        key = _key(file)
        self.progress.file_begin(key, file.path, file.size, sink.offset)
        received = 0

        def on_bytes(n: int) -> None:
            nonlocal received
            received += n
            self.progress.advance(key, n)

        try:
            self.client.download(repo.repo_id, repo.commit, file, sink, on_bytes)
            if isinstance(sink, _LfsSink):
                sink.flusher.join()
            stored = sink.writer.commit()
        except IntegrityError as exc:
            sink.writer.abort(keep_partial=False)
            if sink.resumed_from:
                raise _BadPartial() from exc
            expected = exc.details.get("expected") or f"{exc.details.get('expected_size', file.size)} bytes"
            actual = exc.details.get("actual") or f"{exc.details.get('actual_size', sink.offset)} bytes"
            algorithm = "size" if "expected_size" in exc.details else "sha256" if file.lfs else "git-sha1"
            raise IntegrityError(
                f"{where}: the bytes served do not match what {self.client.endpoint} published: expected "
                f"{algorithm} {expected}, got {actual}; the upstream serves corrupt data (nothing of this pull "
                "was recorded)",
                details={"repo": repo.repo_id, "path": file.path, "expected": expected, "actual": actual,
                         "algorithm": algorithm},
            ) from exc
        except BaseException:
            sink.writer.abort(keep_partial=True)
            raise
        finally:
            self.progress.file_end(key)
        self.stats.add(downloaded_files=1, downloaded_bytes=received, resumed_files=1 if sink.resumed_from else 0)
        return stored.digests.sha256, stored.digests.blake3

    def fetch_all(self, wanted: list[tuple[RemoteRepo, RemoteFile]]) -> dict[tuple[str, str], LockedFile]:
        self.load_known(f for _, f in wanted)
        self.check_stored(f for _, f in wanted)
        unique: dict[str, tuple[RemoteRepo, RemoteFile]] = {}
        for repo, f in wanted:
            unique.setdefault(_key(f), (repo, f))
        todo = [rf for k, rf in unique.items() if k not in self._done and self._reuse(rf[1]) is None]
        self.progress.begin(sum(f.size for _, f in todo), len(todo))
        out: dict[tuple[str, str], LockedFile] = {}
        try:
            # Large files first: the small ones fill the gaps on the other workers.
            todo.sort(key=lambda rf: -rf[1].size)
            with ThreadPoolExecutor(max_workers=max(1, self.workers), thread_name_prefix="pull") as pool:
                futures = [pool.submit(self.fetch, repo, f) for repo, f in todo]
                done, _ = wait(futures, return_when=FIRST_EXCEPTION)
                failed = [fu for fu in done if fu.exception() is not None]
                if failed:
                    self.stop.set()
                    for fu in futures:
                        fu.cancel()
                    wait(futures)
                    errors = [fu.exception() for fu in futures if fu.done() and not fu.cancelled()
                              and fu.exception() is not None and not isinstance(fu.exception(), _Stopped)]
                    # An integrity failure says most about the upstream: report it first.
                    errors.sort(key=lambda e: not isinstance(e, IntegrityError))
                    raise errors[0]  # type: ignore[misc]
            for repo, f in wanted:
                out[(repo.repo_id, f.path)] = self.fetch(repo, f)
        finally:
            self.progress.end()
        return out


# ---- the use case -----------------------------------------------------------------------------------

def _listing(repo: RemoteRepo) -> dict[str, RepoFile]:
    return {p: RepoFile(p, f.size, f.sha256, f.oid, f.lfs) for p, f in repo.files.items()}


def _json_reader(dl: _Downloader, repo: RemoteRepo) -> Callable[[str], Any]:
    def read_json(path: str) -> Any:
        file = repo.files.get(path)
        if file is None or file.size > SMALL_JSON:
            return None
        dl.load_known([file])
        locked = dl.fetch(repo, file)
        return parse_json(dl.store.path_for(locked.sha256).read_bytes(), f"{repo.repo_id}/{path}",
                          expect=expected_type(path))

    return read_json


def _base_lookup(client: HubClient, dl: _Downloader) -> BaseLookup:
    """An adapter's base as the endpoint has it, so inference can read the base's own config.json."""
    def lookup(repo_id: str, revision: str | None) -> RepoView | None:
        try:
            base = client.repo(repo_id, revision or "main")
        except NotFound:
            return None  # reported as a missing base component by the dependency step
        return RepoView(repo_id, tuple(base.files), _json_reader(dl, base), base.commit)

    return lookup


def _from_store(reg: Registry, name: str, revision: str | None, endpoint: str, why: str) -> PullResult:
    """Offline: succeed only if the catalog says the model is complete and every blob is in the store."""
    spec = f"{name}@{revision}" if revision else name
    with reg.catalog.reader() as session:
        try:
            model = find_model(session, spec)
        except ModelNotFound as exc:
            raise EndpointUnreachable(
                f"{why}, and {spec} is not in the catalog: connect to the endpoint (unset HF_HUB_OFFLINE, check "
                "HF_ENDPOINT) or import an offline bundle",
                details={"name": name, "revision": revision, "endpoint": endpoint},
            ) from exc
        require_trusted(reg, session, model, doing=f"pull; {why}")
        state, commit = model.state, model.revision.commit_sha
        refs = [r.name for r in model.revision.repo.refs if r.revision_id == model.revision_id]
        resolved = ResolvedManifest.from_dict(model.manifest)
    if state not in states.LOADABLE:
        raise ConflictError(f"{why}, and {spec} is {state} in the catalog, not complete", details={"state": state})
    files = [f for c in resolved.components for f in c.files]
    absent = [f"{c.role}: {c.repo}/{f.path}" for c in resolved.components for f in c.files
              if not reg.store.has(f.sha256) or reg.store.path_for(f.sha256).stat().st_size != f.size]
    if absent:
        raise IncompleteModel(
            f"{why}, and the store lacks files of {spec}: " + ", ".join(absent)
            + "; reconnect and pull again, or run `registry verify`",
            missing=absent,
        )
    return PullResult(
        name=name, revision=revision or (refs[0] if refs else commit), commit=commit, state=state,
        family=resolved.family, inferred=resolved.inferred, manifest_source=resolved.source,
        root_digest=resolved.root_digest, endpoint=endpoint, files=len(files), bytes=sum(f.size for f in files),
        downloaded_files=0, downloaded_bytes=0, reused_files=len(files), resumed_files=0,
        components=summaries(resolved),
        pickles=tuple(sorted({f.path for f in files if f.path.endswith(PICKLE_SUFFIXES)})),
        offline=True, note=f"{why}: {spec} is already complete in the store; nothing was downloaded",
    )


def _own_revision(manifest: Manifest, name: str) -> str | None:
    revs = {c.revision for c in manifest.components if c.repo == name and c.revision}
    if len(revs) > 1:
        raise UsageError(f"the manifest of {name} names its own repo at several revisions: {', '.join(sorted(revs))}")
    return next(iter(revs), None)


def _dependencies(client: HubClient, manifest: Manifest, repos: dict[str, RemoteRepo]) -> list[Selection]:
    selections: list[Selection] = []
    failed: dict[str, str] = {}
    for comp in manifest.components:
        if comp.repo not in repos and comp.repo not in failed:
            try:
                repos[comp.repo] = client.repo(comp.repo, comp.revision or "main")
            except NotFound as exc:
                failed[comp.repo] = f"not found on {client.endpoint}: {exc.message}"
        if comp.repo in failed:
            selections.append(missing_repo_selection(comp, failed[comp.repo]))
            continue
        have = repos[comp.repo]
        if comp.revision and comp.revision not in (have.revision, have.commit):
            raise UsageError(f"the manifest names {comp.repo} at two revisions ({have.revision} and {comp.revision}); "
                             "one repo can be used at one commit")
        selections.append(select(comp, _listing(have)))
    return selections


@leased("pull")
def pull(reg: Registry, repo_id: str, *, revision: str | None = None, manifest_file: Path | str | None = None,
         endpoint: str | None = None, token: str | None = None, progress: Progress | None = None,
         retries: int = 5, backoff: float = 1.0, workers: int = 8, register: bool | None = False,
         device: str = "auto", include: Sequence[str] = (), exclude: Sequence[str] = ()) -> PullResult:
    """Pull a model; ``register`` as in ``register_after_ingest`` (the CLI and ``registry.pull`` pass None:
    REGISTRY_SMOKE decides). ``include``/``exclude`` add or drop optional files only (manifest/filters.py)."""
    if not REPO_ID_RE.match(repo_id or ""):
        raise UsageError(f"{repo_id!r} is not a repo id like 'org/name'")
    if revision is not None and not revision.strip():
        raise UsageError("--revision is empty; give a branch, tag or commit")
    if revision is not None:
        require_ref(revision)
    if manifest_file is not None and not Path(manifest_file).is_file():
        raise UsageError(f"--manifest {manifest_file}: no such file")
    if retries < 0 or backoff < 0 or workers < 1:
        raise UsageError("--retries and --backoff must not be negative, and workers must be at least 1")
    settings = reg.settings
    endpoint = (endpoint or settings.endpoint).rstrip("/")
    if not endpoint.startswith(("http://", "https://")):
        raise UsageError(f"--endpoint {endpoint!r} is not an http(s) URL")
    if settings.offline:
        result = _from_store(reg, repo_id, revision, endpoint, "offline (HF_HUB_OFFLINE is set)")
    else:
        client = HubClient(endpoint, token or settings.token, retries=retries, backoff=backoff)
        try:
            own = client.repo(repo_id, revision or "main")
        except EndpointUnreachable as exc:
            result = _from_store(reg, repo_id, revision, endpoint, f"{endpoint} is not reachable ({exc.message})")
        else:
            result = _pull_online(reg, client, own, revision, manifest_file, progress or NullProgress(), workers,
                                  include, exclude)
    registration = register_after_ingest(reg, result.name, result.commit, register=register, device=device)
    return dataclasses.replace(result, state=registration.state, registration=registration)


class _UpstreamSource(Source):
    """An upstream (the Hub or a mirror): bytes stream into the store, hashed as they arrive, and count only
    once they match the tree's sizes and digests."""

    action = "pull"

    def __init__(self, reg: Registry, client: HubClient, repos: dict[str, RemoteRepo], dl: _Downloader) -> None:
        self.reg, self.client, self.repos, self.dl = reg, client, repos, dl

    def describe(self, plan: Plan) -> str:
        return f"{plan.name}@{self.repos[plan.name].commit[:12]}"

    def context(self) -> dict[str, Any]:
        return {"endpoint": self.client.endpoint, "commit": next(iter(self.repos.values())).commit}

    def acquire(self, plan: Plan) -> Acquired:
        wanted = [(self.repos[repo], self.repos[repo].files[p]) for repo, p in selected(plan)]
        locked = self.dl.fetch_all(wanted)
        readable: dict[str, dict[str, Path]] = {}
        for (repo, path), lf in locked.items():
            readable.setdefault(repo, {})[path] = self.reg.store.path_for(lf.sha256)
        return Acquired(locked, readable)

    def locate(self, plan: Plan, locked: Mapping[tuple[str, str], LockedFile]
               ) -> tuple[ResolvedManifest, dict[str, RepoSource]]:
        source = f"hub:{self.client.endpoint}"
        resolved = lock(plan.manifest, plan.selections, {r: rr.commit for r, rr in self.repos.items()}, locked,
                        first_use_source=source)
        return resolved, {r: RepoSource(r, rr.commit, source, () if SHA1_RE.match(rr.revision) else (rr.revision,))
                          for r, rr in self.repos.items()}

    def event(self, plan: Plan, resolved: ResolvedManifest, commit: str) -> dict[str, Any]:
        st = self.dl.stats
        return {"commit": commit, "revision": self.repos[plan.name].revision, "root_digest": resolved.root_digest,
                "endpoint": self.client.endpoint, "manifest": plan.manifest.source,
                "downloaded_files": st.downloaded_files, "downloaded_bytes": st.downloaded_bytes,
                "reused_files": st.reused_files}


def _pull_online(reg: Registry, client: HubClient, own: RemoteRepo, revision: str | None,
                 manifest_file: Path | str | None, progress: Progress, workers: int,
                 include: Sequence[str] = (), exclude: Sequence[str] = ()) -> PullResult:
    name = own.repo_id
    dl = _Downloader(reg, client, progress, workers)
    try:  # choosing the manifest and resolving dependencies fetch (small, verified) files too
        manifest = choose_manifest(reg.settings, name, Path(manifest_file) if manifest_file else None,
                                   list(own.files), _json_reader(dl, own), _base_lookup(client, dl))
        pinned = _own_revision(manifest, name)
        if pinned and pinned not in (own.revision, own.commit):
            if revision is not None:
                raise UsageError(f"the manifest ({manifest.source}) pins {name} at {pinned}, but --revision "
                                 f"{revision} is commit {own.commit}; drop --revision or use another manifest")
            own = client.repo(name, pinned)
        repos = {name: own}
        selections = filter_selections(_dependencies(client, manifest, repos), name, own.files,
                                       include=include, exclude=exclude)
    except (IntegrityError, IncompleteModel) as exc:
        log_refusal(reg, "pull", name, exc, endpoint=client.endpoint, commit=own.commit)
        raise
    plan = make_plan(name, manifest, selections, explicit=manifest_file is not None, own_paths=own.files)
    signatures: list[Any] = []

    def approve(resolved: ResolvedManifest) -> None:
        # under a trust policy: the upstream's model.sig must be a trusted signature of these bytes, or nothing is recorded
        signatures.extend(pulled_signatures(reg, client, repos, resolved))

    done = ingest_run(reg, _UpstreamSource(reg, client, repos, dl), plan, approve=approve)
    files, size = totals(done.resolved)
    st = dl.stats
    record_pulled(reg, name, signatures)
    return PullResult(
        name=name, revision=own.revision, commit=own.commit, state=done.state, family=done.resolved.family,
        inferred=done.resolved.inferred, manifest_source=done.resolved.source, root_digest=done.resolved.root_digest,
        endpoint=client.endpoint, files=files, bytes=size, downloaded_files=st.downloaded_files,
        downloaded_bytes=st.downloaded_bytes, reused_files=st.reused_files, resumed_files=st.resumed_files,
        components=summaries(done.resolved), pickles=done.pickles, note=first_use_note(done.resolved),
        family_rule=done.resolved.family_rule,
        disagreements=tuple((done.resolved.inference or {}).get("disagreements", ())),
        ignored=plan.ignored, released=done.released,
    )
