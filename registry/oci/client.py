"""The OCI distribution HTTP API (opencontainers/distribution-spec) over httpx.

Blobs: HEAD, cross-repo mount (``POST .../uploads/?mount=&from=``), monolithic streaming upload
(``POST`` then ``PUT ?digest=`` with the file as the body), and ranged streaming download into a sink
(resumed with ``Range`` from the sink's offset, retried with backoff). Manifests: HEAD, GET (capped,
digest checked), PUT. Each request carries the scope it needs; a 401 is answered once through
``Authenticator`` and retried. Hashing is the sink's job, as in ``registry.fetch``.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx

from registry.errors import (
    EndpointUnreachable, IntegrityError, RegistryError, RepoNotFound, RevisionNotFound, UpstreamError, UsageError,
)
from registry.fetch.hub import Sink
from registry.fetch.pipe import Pipeline
from registry.hashing import CHUNK
from registry.oci.auth import Authenticator, Credentials
from registry.oci.modelpack import ACCEPT, MANIFEST_V1, MAX_MANIFEST, digest_of
from registry.oci.reference import OciReference, is_loopback

_TRANSIENT = {429, 500, 502, 503, 504}
_CONTENT_RANGE = re.compile(r"^bytes (\d+)-(\d+)/(\d+|\*)$")


class BlobMissing(RegistryError):
    """A blob the manifest names answers 404: the caller says which file that is."""


class _Transient(Exception):
    pass


def pull_scope(repository: str) -> str:
    return f"repository:{repository}:pull"


def push_scope(repository: str) -> str:
    return f"repository:{repository}:pull,push"


def _errors(response: httpx.Response) -> str:
    """Distribution's error body ``{"errors": [{"code", "message", "detail"}]}`` in one line."""
    try:
        items = response.json().get("errors") or []
        return "; ".join(f"{e.get('code')}: {e.get('message')}" + (f" ({e.get('detail')})" if e.get("detail") else "")
                         for e in items if isinstance(e, dict))
    except (ValueError, AttributeError):
        return ""


class RegistryClient:
    """One registry host. Thread-safe: blobs move on several threads over one connection pool."""

    def __init__(self, ref: OciReference, credentials: Credentials | None = None, *, insecure: bool = False,
                 retries: int = 5, backoff: float = 1.0, timeout: float = 60.0, connections: int = 16,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        if insecure and not is_loopback(ref.hostname):
            raise UsageError(f"--insecure (plain HTTP) is allowed only for a loopback registry (127.0.0.0/8, ::1, "
                             f"localhost), not {ref.host}; use HTTPS there", details={"host": ref.host})
        self.host = ref.host
        self.base = f"{'http' if insecure else 'https'}://{ref.host}"
        self.retries, self.backoff, self._sleep = retries, backoff, sleep
        from registry import __version__

        self._http = httpx.Client(
            # plain HTTP needs no CA bundle, and loading one costs ~70 ms of every command's start
            verify=not insecure,
            timeout=httpx.Timeout(timeout, connect=min(timeout, 15.0)), follow_redirects=True,
            limits=httpx.Limits(max_connections=connections, max_keepalive_connections=connections),
            headers={"User-Agent": f"registry/{__version__}"},
        )
        self.auth = Authenticator(self._http, ref.host, credentials, allow_http_realm=insecure)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> "RegistryClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- plumbing ------------------------------------------------------------------------------------
    def _url(self, repository: str, tail: str) -> str:
        return f"{self.base}/v2/{repository}/{tail}"

    def _unreachable(self, exc: Exception) -> EndpointUnreachable:
        return EndpointUnreachable(f"cannot connect to the registry {self.base}: {exc}; check the host and port "
                                   "(plain HTTP needs --insecure, on loopback only)", details={"registry": self.base})

    def _send(self, method: str, url: str | httpx.URL, scope: str, *, stream: bool = False,
              body: Callable[[], Any] | None = None, **kw: Any) -> httpx.Response:
        """One request, answering a 401 once; ``body`` makes a fresh request body for the retry."""
        fixed = dict(kw.pop("headers", {}))
        for attempt in (0, 1):
            headers = {**fixed, **self.auth.header(scope)}
            content = body() if body is not None else kw.get("content")
            request = self._http.build_request(method, url, headers=headers, **{**kw, "content": content})
            try:
                response = self._http.send(request, stream=stream)
            except httpx.ConnectError as exc:
                raise self._unreachable(exc) from exc
            if response.status_code != 401:
                return response
            response.read()
            if attempt:
                raise self.auth.denied(scope, 401)
            self.auth.answer(response, scope)
            response.close()
        raise AssertionError("unreachable")

    def _retrying(self, what: str, fn: Callable[[], httpx.Response]) -> httpx.Response:
        failures = 0
        while True:
            try:
                response = fn()
                if response.status_code not in _TRANSIENT:
                    return response
                last = f"HTTP {response.status_code} {_errors(response)}"
            except httpx.TransportError as exc:
                if isinstance(exc, httpx.ConnectError):
                    raise self._unreachable(exc) from exc
                last = f"{type(exc).__name__}: {exc}"
            failures += 1
            if failures > self.retries:
                raise UpstreamError(f"{self.base}: {what} keeps failing ({last}) after {self.retries} retries",
                                    details={"registry": self.base})
            self._sleep(min(self.backoff * 2 ** (failures - 1), 30.0))

    def _fail(self, response: httpx.Response, what: str, scope: str) -> RegistryError:
        detail = _errors(response)
        if response.status_code == 403:
            return self.auth.denied(scope, 403)
        return UpstreamError(f"{self.base}: {what} failed: HTTP {response.status_code}"
                             + (f": {detail}" if detail else ""), details={"registry": self.base,
                                                                           "status": response.status_code})

    # ---- manifests -----------------------------------------------------------------------------------
    def manifest_digest(self, repository: str, reference: str, scope: str | None = None) -> str | None:
        """The digest ``reference`` (a tag or digest) names in ``repository``, or None when it is absent."""
        scope = scope or pull_scope(repository)
        r = self._retrying(f"HEAD manifest {repository}:{reference}", lambda: self._send(
            "HEAD", self._url(repository, f"manifests/{reference}"), scope, headers={"Accept": ACCEPT}))
        if r.status_code == 404:
            return None
        if r.status_code != 200:
            raise self._fail(r, f"HEAD manifest {repository}:{reference}", scope)
        return r.headers.get("Docker-Content-Digest")

    def get_manifest(self, repository: str, reference: str) -> tuple[bytes, str]:
        """The manifest's bytes and content type; its digest is checked when ``reference`` is one, and against
        the registry's Docker-Content-Digest otherwise."""
        scope = pull_scope(repository)
        where = f"{repository}:{reference}" if not reference.startswith("sha256:") else f"{repository}@{reference}"

        got = bytearray()

        def get() -> httpx.Response:
            got.clear()
            r = self._send("GET", self._url(repository, f"manifests/{reference}"), scope, stream=True,
                           headers={"Accept": ACCEPT})
            try:
                if r.status_code == 200:
                    declared = int(r.headers.get("Content-Length") or 0)
                    if declared > MAX_MANIFEST:
                        raise UpstreamError(f"{self.base}: the manifest {where} is {declared} bytes, larger than "
                                            f"{MAX_MANIFEST}: not a manifest", details={"registry": self.base})
                    for piece in r.iter_bytes():
                        got.extend(piece)
                        if len(got) > MAX_MANIFEST:
                            raise UpstreamError(f"{self.base}: the manifest {where} is larger than {MAX_MANIFEST} "
                                                "bytes: not a manifest", details={"registry": self.base})
                else:
                    r.read()
            finally:
                r.close()
            return r

        r = self._retrying(f"GET manifest {where}", get)
        if r.status_code == 404:
            code = _errors(r)
            if "NAME_UNKNOWN" in code:
                raise RepoNotFound(f"no repository {self.host}/{repository} ({code})",
                                   details={"registry": self.base, "repository": repository})
            raise RevisionNotFound(f"{self.host}/{where} does not exist" + (f" ({code})" if code else "")
                                   + "; check the tag or digest",
                                   details={"registry": self.base, "reference": reference})
        if r.status_code != 200:
            raise self._fail(r, f"GET manifest {where}", scope)
        body = bytes(got)
        actual = digest_of(body)
        expected = reference if reference.startswith("sha256:") else r.headers.get("Docker-Content-Digest")
        if expected and expected != actual:
            raise IntegrityError(f"{self.host}/{where}: the manifest's bytes hash to {actual}, the registry says "
                                 f"{expected}; nothing was pulled", details={"expected": expected, "actual": actual})
        return body, r.headers.get("Content-Type", "")

    def put_manifest(self, repository: str, reference: str, body: bytes) -> str:
        scope = push_scope(repository)
        r = self._retrying(f"PUT manifest {repository}:{reference}", lambda: self._send(
            "PUT", self._url(repository, f"manifests/{reference}"), scope, content=body,
            headers={"Content-Type": MANIFEST_V1}))
        if r.status_code not in (200, 201):
            raise self._fail(r, f"PUT manifest {repository}:{reference}", scope)
        digest = digest_of(body)
        got = r.headers.get("Docker-Content-Digest")
        if got and got != digest:
            raise IntegrityError(f"{self.base}: stored the manifest {repository}:{reference} as {got}, but its bytes "
                                 f"hash to {digest}", details={"expected": digest, "actual": got})
        return digest

    # ---- blobs ---------------------------------------------------------------------------------------
    def has_blob(self, repository: str, digest: str) -> bool:
        scope = push_scope(repository)
        r = self._retrying(f"HEAD blob {digest}", lambda: self._send(
            "HEAD", self._url(repository, f"blobs/{digest}"), scope))
        if r.status_code == 404:
            return False
        if r.status_code != 200:
            raise self._fail(r, f"HEAD blob {repository}@{digest}", scope)
        return True

    def mount_blob(self, repository: str, digest: str, source: str) -> bool:
        """Ask the registry to link a blob it holds in ``source``; False when it would not (then upload)."""
        scope = f"{push_scope(repository)} {pull_scope(source)}"
        r = self._retrying(f"mount {digest}", lambda: self._send(
            "POST", self._url(repository, "blobs/uploads/"), scope, params={"mount": digest, "from": source},
            headers={"Content-Length": "0"}))
        if r.status_code == 201:
            return True
        if r.status_code == 202 and r.headers.get("Location"):
            # not mounted: the registry opened an upload instead; cancel it (best effort, it expires anyway)
            try:
                self._send("DELETE", httpx.URL(self.base).join(r.headers["Location"]), push_scope(repository))
            except RegistryError:
                pass
            return False
        if r.status_code in (401, 403):
            raise self._fail(r, f"mount {digest}", scope)
        return False

    def upload_blob(self, repository: str, digest: str, size: int, chunks: Callable[[], Iterator[bytes]]) -> None:
        """POST an upload, then PUT the whole blob, streamed from ``chunks()`` (called anew on a retry)."""
        scope = push_scope(repository)
        failures = 0
        while True:
            try:
                r = self._send("POST", self._url(repository, "blobs/uploads/"), scope, headers={"Content-Length": "0"})
                if r.status_code != 202 or not r.headers.get("Location"):
                    if r.status_code in _TRANSIENT:
                        raise _Transient(f"HTTP {r.status_code}")
                    raise self._fail(r, f"starting the upload of {digest}", scope)
                location = httpx.URL(self.base).join(r.headers["Location"]).copy_merge_params({"digest": digest})
                r = self._send("PUT", location, scope, body=chunks,
                               headers={"Content-Type": "application/octet-stream", "Content-Length": str(size)})
                if r.status_code == 201:
                    return
                if r.status_code in _TRANSIENT:
                    raise _Transient(f"HTTP {r.status_code}")
                if r.status_code == 400 and "DIGEST_INVALID" in _errors(r):
                    raise IntegrityError(f"{self.base} refused blob {digest}: the bytes sent do not hash to it (the "
                                         "store's blob changed? run `registry verify`)", details={"digest": digest})
                raise self._fail(r, f"uploading {digest}", scope)
            except (_Transient, httpx.TransportError) as exc:
                if isinstance(exc, httpx.ConnectError):
                    raise self._unreachable(exc) from exc
                failures += 1
                if failures > self.retries:
                    raise UpstreamError(f"{self.base}: uploading {digest} keeps failing ({type(exc).__name__}: {exc}) "
                                        f"after {self.retries} retries; run the same push again (blobs already "
                                        "uploaded are not sent twice)", details={"digest": digest}) from exc
                self._sleep(min(self.backoff * 2 ** (failures - 1), 30.0))

    def download_blob(self, repository: str, digest: str, size: int, sink: Sink,
                      on_bytes: Callable[[int], None] = lambda n: None) -> None:
        """Stream a blob into ``sink`` from ``sink.offset`` on (Range), retrying dropped connections and 5xx
        from the bytes already held; after ``retries`` failures without progress the sink keeps its bytes."""
        scope = pull_scope(repository)
        url = self._url(repository, f"blobs/{digest}")
        failures = 0
        sent = False
        while True:
            start = sink.offset
            if start >= size and sent:
                return
            sent = True
            headers = {"Accept-Encoding": "identity"}
            if start:
                headers["Range"] = f"bytes={start}-"
            try:
                with Pipeline(sink, on_bytes) as pipe:
                    r = self._send("GET", url, scope, stream=True, headers=headers)
                    try:
                        if r.status_code == 404:
                            r.read()
                            raise BlobMissing(f"blob {digest} answers 404", details={"digest": digest})
                        if r.status_code in _TRANSIENT:
                            r.read()
                            raise _Transient(f"HTTP {r.status_code}")
                        if r.status_code not in (200, 206):
                            r.read()
                            raise self._fail(r, f"GET blob {digest}", scope)
                        if start and r.status_code == 200:
                            pipe.restart()  # Range ignored: the whole blob comes again
                        elif r.status_code == 206:
                            match = _CONTENT_RANGE.match(r.headers.get("Content-Range", ""))
                            if not match or int(match.group(1)) != start:
                                raise UpstreamError(f"{self.base}: asked for bytes {start}- of {digest}, got "
                                                    f"Content-Range {r.headers.get('Content-Range')!r}",
                                                    details={"digest": digest})
                        _pump(r, pipe)
                    finally:
                        r.close()
                return
            except RegistryError:
                raise
            except (_Transient, httpx.TransportError) as exc:
                failures = 0 if sink.offset > start else failures + 1
                if failures > self.retries:
                    raise UpstreamError(
                        f"{self.base}: download of {repository}@{digest} keeps failing ({type(exc).__name__}: {exc}) "
                        f"after {self.retries} retries; {sink.offset} of {size} bytes are kept: run the same pull "
                        "again to resume", details={"digest": digest, "offset": sink.offset, "resumable": True},
                    ) from exc
                if failures:
                    self._sleep(min(self.backoff * 2 ** (failures - 1), 30.0))


def _pump(response: httpx.Response, pipe: Pipeline) -> None:
    """Hand the body over in pieces of about CHUNK bytes, joined: hashing a piece of 1 MiB or more runs sha256
    and blake3 on two threads (hashing.MultiHasher). What arrived before a drop is still handed over."""
    pending: list[bytes] = []
    held = 0
    try:
        for piece in response.iter_bytes():
            pending.append(piece)
            held += len(piece)
            if held >= CHUNK:
                pipe.write([b"".join(pending)])
                pending, held = [], 0
    except httpx.TransportError:
        if pending:
            pipe.write([b"".join(pending)])
        raise
    if pending:
        pipe.write([b"".join(pending)])
