"""Talk to the Hub (or an HF-compatible mirror) through huggingface_hub: revision → commit, the repo
tree with sizes and digests, and ranged, resumable GETs whose bytes go to a caller's sink.

Works with huggingface_hub 1.x (httpx) and 2.x (httpx2): only the public ``HfApi``, ``hf_hub_url``,
``build_hf_headers``, ``get_session`` and ``hf_raise_for_status`` are used. Hashing is the sink's job;
this module checks the protocol (``X-Repo-Commit``, ``Content-Range``) and retries dropped connections.
"""

from __future__ import annotations

import importlib
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from registry.errors import EndpointUnreachable, IntegrityError, RegistryError, UpstreamError
from registry.fetch.errors import translate
from registry.fetch.pipe import Pipeline
from registry.fetch.redirects import Hop, origin, stream_get
from registry.hashing import SHA1_RE, SHA256_RE
from registry.paths import check_relative_path

CHUNK = 1024 * 1024
_TRANSIENT_STATUS = {429, 500, 502, 503, 504}
_CONTENT_RANGE = re.compile(r"^bytes (\d+)-(\d+)/(\d+|\*)$")


@dataclass(frozen=True)
class RemoteFile:
    """One file of a repo tree. ``oid`` is the git blob sha1 (of the LFS pointer for LFS files)."""

    path: str
    size: int
    oid: str
    sha256: str | None = None  # the LFS oid; None for regular (non-LFS) files

    @property
    def lfs(self) -> bool:
        return self.sha256 is not None


@dataclass(frozen=True)
class RemoteRepo:
    repo_id: str
    revision: str  # what was asked for (a ref or a commit)
    commit: str
    files: Mapping[str, RemoteFile]


class Sink(Protocol):
    """Where a download's bytes go. ``offset`` is how many bytes it holds (a resume point)."""

    @property
    def offset(self) -> int: ...

    def write(self, chunk: bytes) -> None: ...

    def restart(self) -> None:
        """Drop the bytes so far: the server ignored our Range and sends the file from byte 0."""


def _transport_errors() -> tuple[type[BaseException], ...]:
    """The HTTP client's network errors: httpx under huggingface_hub 1.x, httpx2 under 2.x."""
    from huggingface_hub.utils import get_session

    module = importlib.import_module(type(get_session()).__module__.split(".")[0])
    return (module.TransportError,)


def _connect_errors() -> tuple[type[BaseException], ...]:
    from huggingface_hub.utils import get_session

    module = importlib.import_module(type(get_session()).__module__.split(".")[0])
    return (module.ConnectError, module.ConnectTimeout)


class HubClient:
    """One endpoint and token. Thread-safe: downloads may run on several threads."""

    def __init__(self, endpoint: str, token: str | None = None, *, retries: int = 5, backoff: float = 1.0,
                 timeout: float | None = None, sleep: Callable[[float], None] = time.sleep) -> None:
        from huggingface_hub import HfApi, constants

        from registry import __version__

        self.endpoint = endpoint.rstrip("/")
        self.token = token
        self.retries = retries
        self.backoff = backoff
        self.timeout = timeout if timeout is not None else float(constants.HF_HUB_DOWNLOAD_TIMEOUT)
        self._sleep = sleep
        self._origin = origin(self.endpoint)  # the only origin that gets the token
        self._api = HfApi(endpoint=self.endpoint, token=token, library_name="registry", library_version=__version__)
        self._transport = _transport_errors()
        self._connect = _connect_errors()

    # ---- metadata ---------------------------------------------------------------------------------
    def _call(self, fn: Callable[[], Any], *, repo_id: str, revision: str | None) -> Any:
        from huggingface_hub import errors as hf

        try:
            return fn()
        except hf.OfflineModeIsEnabled as exc:
            raise EndpointUnreachable(f"offline mode is on (HF_HUB_OFFLINE): cannot reach {self.endpoint}",
                                      details={"endpoint": self.endpoint}) from exc
        except self._connect as exc:
            raise EndpointUnreachable(f"cannot connect to {self.endpoint}: {exc}; check HF_ENDPOINT / --endpoint "
                                      "and the network", details={"endpoint": self.endpoint}) from exc
        except hf.HfHubHTTPError as exc:
            raise translate(exc, endpoint=self.endpoint, repo_id=repo_id, revision=revision) from exc
        except self._transport as exc:
            raise UpstreamError(f"{self.endpoint}: network error for {repo_id}: {type(exc).__name__}: {exc}",
                                details={"endpoint": self.endpoint, "repo": repo_id}) from exc
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            # A 200 whose body is not the Hub's JSON: a web server, a login page, a proxy error page.
            raise UpstreamError(
                f"{self.endpoint} is not a Hub-compatible endpoint: its answer for {repo_id} is not the Hub's JSON "
                f"({type(exc).__name__}: {exc}); check HF_ENDPOINT / --endpoint",
                details={"endpoint": self.endpoint, "repo": repo_id},
            ) from exc

    def resolve(self, repo_id: str, revision: str = "main") -> str:
        """The 40-hex commit that ``revision`` (branch, tag or commit) names."""
        info = self._call(lambda: self._api.model_info(repo_id, revision=revision), repo_id=repo_id, revision=revision)
        sha = getattr(info, "sha", None)
        if not isinstance(sha, str) or not SHA1_RE.match(sha):
            raise UpstreamError(
                f"{self.endpoint} is not a Hub-compatible endpoint: /api/models/{repo_id}/revision/{revision} gave no "
                f"40-hex 'sha' (got {sha!r}); check HF_ENDPOINT / --endpoint",
                details={"endpoint": self.endpoint, "repo": repo_id, "revision": revision},
            )
        return sha

    def tree(self, repo_id: str, commit: str) -> dict[str, RemoteFile]:
        """Every file of ``repo_id`` at ``commit``, checked: safe relative paths, hex digests, sizes."""
        from huggingface_hub.hf_api import RepoFile

        entries = self._call(lambda: list(self._api.list_repo_tree(repo_id, revision=commit, recursive=True)),
                             repo_id=repo_id, revision=commit)
        files: dict[str, RemoteFile] = {}
        for entry in entries:
            if not isinstance(entry, RepoFile):
                continue
            where = f"{self.endpoint} tree of {repo_id}@{commit[:12]}"
            try:
                check_relative_path(entry.path)
            except ValueError as exc:
                raise IntegrityError(
                    f"{where} names an unsafe path {entry.path!r} ({exc}); refusing the pull (nothing was downloaded "
                    "or recorded): the upstream is broken or hostile",
                    details={"repo": repo_id, "commit": commit, "path": entry.path},
                ) from exc
            lfs = entry.lfs
            sha256 = getattr(lfs, "sha256", None) if lfs is not None else None
            oid = entry.blob_id
            if not (isinstance(entry.size, int) and entry.size >= 0 and isinstance(oid, str) and SHA1_RE.match(oid)
                    and (sha256 is None or SHA256_RE.match(sha256))):
                raise UpstreamError(
                    f"{where}: {entry.path}: malformed entry (size {entry.size!r}, oid {oid!r}, lfs sha256 {sha256!r})",
                    details={"repo": repo_id, "commit": commit, "path": entry.path},
                )
            if entry.path in files:
                raise UpstreamError(f"{where} lists {entry.path!r} twice", details={"repo": repo_id, "path": entry.path})
            files[entry.path] = RemoteFile(entry.path, entry.size, oid, sha256)
        return files

    def repo(self, repo_id: str, revision: str = "main") -> RemoteRepo:
        commit = self.resolve(repo_id, revision)
        return RemoteRepo(repo_id, revision, commit, self.tree(repo_id, commit))

    # ---- bytes ------------------------------------------------------------------------------------
    def download(self, repo_id: str, commit: str, file: RemoteFile, sink: Sink,
                 on_bytes: Callable[[int], None] = lambda n: None) -> int:
        """Stream ``file`` at ``commit`` into ``sink`` from ``sink.offset`` on; returns the requests made.

        A dropped connection or a 5xx is retried with exponential backoff from the bytes already held;
        after ``retries`` attempts without progress it raises UpstreamError (the sink keeps its bytes,
        so a later run resumes). Receiving and the sink's hashing/writing overlap on two threads.
        """
        from huggingface_hub import errors as hf
        from huggingface_hub import hf_hub_url
        from huggingface_hub.utils import build_hf_headers, get_session, hf_raise_for_status

        url = hf_hub_url(repo_id, file.path, revision=commit, endpoint=self.endpoint)
        base_headers = build_hf_headers(token=self.token, library_name="registry")
        base_headers["Accept-Encoding"] = "identity"  # hash the bytes as published, not a re-encoding
        session = get_session()
        failures = 0
        requests = 0
        last_error = ""
        while True:
            start = sink.offset
            if start >= file.size and (requests or start):
                return requests
            headers = dict(base_headers)
            if start:
                headers["Range"] = f"bytes={start}-"
            requests += 1
            try:
                with Pipeline(sink, on_bytes) as pipe, stream_get(
                    session, url, headers, token_origin=self._origin, timeout=self.timeout
                ) as (response, hops):
                    status = response.status_code
                    if status >= 400:
                        response.read()
                        if status in _TRANSIENT_STATUS:
                            raise _Transient(f"HTTP {status}")
                        try:
                            hf_raise_for_status(response)
                        except hf.HfHubHTTPError as exc:
                            raise translate(exc, endpoint=self.endpoint, repo_id=repo_id, revision=commit,
                                            path=file.path) from exc
                    if status not in (200, 206):
                        raise UpstreamError(
                            f"{self.endpoint}: {repo_id}@{commit[:12]}: {file.path}: answered HTTP {status} to a "
                            "download (expected 200, or 206 to a Range); the endpoint is not Hub-compatible",
                            details={"endpoint": self.endpoint, "repo": repo_id, "path": file.path,
                                     "status": status},
                        )
                    self._check_commit(hops, repo_id, commit, file.path)
                    if start and status == 200:
                        pipe.restart()  # the server ignored the Range: it sends everything again
                    elif status == 206:
                        self._check_range(response, start, file, repo_id)
                    _pump(response, pipe, self._transport)
                return requests
            except RegistryError:
                raise
            except hf.OfflineModeIsEnabled as exc:
                raise EndpointUnreachable(f"offline mode is on (HF_HUB_OFFLINE): cannot download {file.path}") from exc
            except (_Transient, *self._transport) as exc:
                last_error = f"{type(exc).__name__}: {exc}"
                failures = 0 if sink.offset > start else failures + 1
                if failures > self.retries:
                    raise UpstreamError(
                        f"{self.endpoint}: download of {repo_id}@{commit[:12]}: {file.path} keeps failing "
                        f"({last_error}) after {self.retries} retries with backoff; {sink.offset} of {file.size} bytes "
                        "are kept: run the same command again to resume",
                        details={"repo": repo_id, "path": file.path, "offset": sink.offset, "size": file.size,
                                 "resumable": True},
                    ) from exc
                if failures:
                    self._sleep(min(self.backoff * 2 ** (failures - 1), 30.0))

    def _check_commit(self, hops: list[Hop], repo_id: str, commit: str, path: str) -> None:
        """Refuse an X-Repo-Commit that contradicts the resolved commit, on any hop (the Hub puts it on the
        302 to its CDN). Its absence is fine: the commit came from the revision API, and every byte is
        checked against that commit's tree (Olah and Artifactory send no X-Repo-Commit on GET)."""
        for hop in hops:
            claimed = (hop.repo_commit or "").strip().lower()
            if claimed and claimed != commit:
                raise UpstreamError(
                    f"{self.endpoint} served {repo_id}: {path} from commit {claimed}, not the asked-for {commit} "
                    "(X-Repo-Commit); the mirror is inconsistent: its revision API and its files disagree",
                    details={"endpoint": self.endpoint, "repo": repo_id, "path": path, "commit": claimed},
                )

    def _check_range(self, response: Any, start: int, file: RemoteFile, repo_id: str) -> None:
        match = _CONTENT_RANGE.match(response.headers.get("Content-Range", ""))
        if not match or int(match.group(1)) != start:
            raise UpstreamError(
                f"{self.endpoint}: {repo_id}: {file.path}: asked for bytes {start}- and got Content-Range "
                f"{response.headers.get('Content-Range')!r}; the server's Range support is broken",
                details={"repo": repo_id, "path": file.path},
            )


class _Transient(Exception):
    """A 5xx/429 answer: retried like a dropped connection."""


def _pump(response: Any, pipe: Pipeline, transport: tuple[type[BaseException], ...]) -> None:
    """Pass the body on in batches of ~1 MiB of the client's own pieces (no copying them together).
    When the connection drops, what did arrive is still handed over, so the resume point is exactly
    the bytes received."""
    batch: list[bytes] = []
    size = 0
    try:
        for piece in response.iter_bytes():
            batch.append(piece)
            size += len(piece)
            if size >= CHUNK:
                pipe.write(batch)
                batch, size = [], 0
    except transport:
        if batch:
            pipe.write(batch)
        raise
    if batch:
        pipe.write(batch)
