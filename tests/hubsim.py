"""hubsim: a real HTTP server on 127.0.0.1 that speaks the Hub's protocol (../shared/docs/hf-protocol.md)
for repos built on disk by the tests, with switches for the faults real upstreams have.

It imitates huggingface.co for the puller's tests (it is not `registry serve`):
- ``GET /api/models/{repo}[/revision/{rev}]`` (``?blobs=true`` adds sizes and LFS info), ``GET
  /api/models/{repo}/tree/{rev}[/{path}]`` (recursive or not, paginated with ``Link: rel="next"``),
  ``GET /api/models/{repo}/refs``, ``HEAD``/``GET /{repo}/resolve/{rev}/{path}`` with Range (206 and
  ``Content-Range``, 416 past the end), ``X-Repo-Commit``, ``ETag``, ``X-Error-Code`` on every 404;
- faults (``Faults``): bytes that do not match the LFS oid, a required token (401 without one, 403
  with a wrong one), no ``X-Repo-Commit`` (a non-Hub endpoint), the connection dropped at a byte
  offset (N times or always), Range ignored, a throttle (slow upstream), extra tree entries with
  unsafe paths, LFS downloads redirected to a same-host "CDN" that carries no Hub headers, an API
  answering HTML, and queued error statuses (5xx) for a file's next GETs;
- what other servers do differently (each has a pull test in tests/test_pull_servers.py): headers sent
  on HEAD but not on GET (Olah sends no ``X-Repo-Commit`` and no ``ETag`` on GET), an ``X-Repo-Commit``
  that contradicts the revision API, HEAD answered 405, redirects (302/307) to a CDN on another host
  (``HubSim.start_cdn``: a second server, on 127.0.0.2, that refuses an Authorization header as S3
  refuses one beside a signed URL), opaque tree cursors (as the Hub's), and Xet-backed files (``xetHash``
  in the tree, ``X-Xet-*`` headers and ``rel="xet-auth"`` on /resolve, bytes on the LFS-compatible
  route through the CDN, a ``/xet-read-token`` that has no CAS behind it).

Every request is logged in ``HubSim.requests`` (method, path, Range header) and ``HubSim.authorizations``
(path, Authorization header) for assertions.
Run standalone: ``python -m tests.hubsim ORG/NAME=FOLDER ... [--port N] [--throttle BYTES_PER_S]``.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import os
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, quote, unquote, urlsplit

from registry.hashing import LFS_THRESHOLD, hash_file, lfs_pointer_oid

LFS_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".model", ".msgpack", ".h5", ".onnx", ".ckpt", ".gguf")
SEND_CHUNK = 256 * 1024


@dataclass(frozen=True)
class SimFile:
    path: str
    source: Path
    size: int
    sha256: str
    git_sha1: str | None
    lfs: bool

    @property
    def oid(self) -> str:
        return lfs_pointer_oid(self.sha256, self.size) if self.lfs else self.git_sha1  # type: ignore[return-value]

    @property
    def etag(self) -> str:
        return self.sha256 if self.lfs else self.oid

    @property
    def xet_hash(self) -> str:
        # A stand-in of the right shape (64 hex): the real one is a Merkle hash only a Xet CAS can serve.
        return hashlib.sha256(b"xet\0" + self.sha256.encode()).hexdigest()


@dataclass
class SimRepo:
    repo_id: str
    commits: dict[str, dict[str, SimFile]] = field(default_factory=dict)
    refs: dict[str, str] = field(default_factory=dict)


@dataclass
class Faults:
    corrupt: set[tuple[str, str]] = field(default_factory=set)  # (repo, path): same size, wrong bytes
    token: str | None = None  # required bearer token: none -> 401, wrong -> 403
    no_repo_commit: bool = False
    drop_at: dict[tuple[str, str], int] = field(default_factory=dict)  # cut the connection at this byte offset
    drop_times: dict[tuple[str, str], int] = field(default_factory=dict)  # how often (absent: always)
    ignore_range: bool = False
    throttle: float | None = None  # bytes per second for every body
    extra_tree: list[dict] = field(default_factory=list)  # raw entries appended to every tree
    cdn_redirect: bool = False  # LFS GETs: 302 to /cdn/<sha256> (Hub headers only on the 302)
    cdn_url: str | None = None  # the CDN's base URL when it is another server (HubSim.start_cdn)
    redirect_status: int = 302  # the Hub answers 302; some mirrors and object stores 307
    cdn_refuses_token: bool = False  # /cdn answers 400 to an Authorization header (S3 with a signed URL)
    api_html: bool = False  # the API answers 200 text/html (a web server, not a Hub)
    fail_status: dict[tuple[str, str], list[int]] = field(default_factory=dict)  # next answers for a file GET
    wrong_repo_commit: str | None = None  # /resolve answers claim this X-Repo-Commit
    head_only: set[str] = field(default_factory=set)  # headers /resolve sends on HEAD but not on GET
    head_status: int | None = None  # HEAD /resolve answers this (405: a server that only knows GET)
    redirect_loop: bool = False  # LFS GETs on /resolve redirect to themselves
    xet: bool = False  # LFS files are Xet-backed: xetHash in the tree, X-Xet-* on /resolve, bytes via the CDN


def _commit_for(repo_id: str, files: dict[str, SimFile], salt: str) -> str:
    h = hashlib.sha1(f"hubsim\0{repo_id}\0{salt}".encode())
    for p in sorted(files):
        h.update(f"{p}\0{files[p].oid}\n".encode())
    return h.hexdigest()


class HubSim:
    def __init__(self) -> None:
        self.repos: dict[str, SimRepo] = {}
        self.faults = Faults()
        self.requests: list[tuple[str, str, str | None]] = []
        self.authorizations: list[tuple[str, str | None]] = []  # (path, Authorization header) per request
        self.host = "127.0.0.1"
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._dropped: dict[tuple[str, str], int] = {}
        self.page_size = 1000  # tree entries per page; a test sets it low to exercise Link pagination

    # ---- repos --------------------------------------------------------------------------------
    def add_repo(self, repo_id: str, folder: Path, *, ref: str = "main", lfs: set[str] | None = None,
                 salt: str = "") -> str:
        """Serve ``folder`` as ``repo_id`` at a new commit that ``ref`` points to; returns the commit."""
        folder = Path(folder)
        files: dict[str, SimFile] = {}
        for p in sorted(folder.rglob("*")):
            if not p.is_file():
                continue
            rel = p.relative_to(folder).as_posix()
            d = hash_file(p)
            size = d.size
            is_lfs = rel in lfs if lfs is not None else (rel.endswith(LFS_SUFFIXES) or size >= LFS_THRESHOLD)
            git = d.git_sha1
            if git is None and not is_lfs:
                data = p.read_bytes()
                git = hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()
            files[rel] = SimFile(rel, p, size, d.sha256, git, is_lfs)
        commit = _commit_for(repo_id, files, salt or ref)
        repo = self.repos.setdefault(repo_id, SimRepo(repo_id))
        repo.commits[commit] = files
        repo.refs[ref] = commit
        return commit

    def file(self, repo_id: str, path: str, ref: str = "main") -> SimFile:
        repo = self.repos[repo_id]
        return repo.commits[repo.refs[ref]][path]

    # ---- server -------------------------------------------------------------------------------
    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://{self.host}:{self._server.server_address[1]}"

    def start(self, port: int = 0, host: str = "127.0.0.1") -> "HubSim":
        self.host = host
        server = ThreadingHTTPServer((host, port), _Handler)
        server.daemon_threads = True
        server.sim = self  # type: ignore[attr-defined]
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, name="hubsim", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> "HubSim":
        return self.start()

    def start_cdn(self, host: str = "127.0.0.2", status: int = 302) -> "HubSim":
        """A second server, on another host, that serves this one's LFS objects under /cdn/ (and Xet-backed
        ones under /xet-bridge-us/), as cdn-lfs.hf.co and cas-bridge.xethub.hf.co do for huggingface.co.
        LFS answers of this server then redirect there with ``status``. The caller stops it."""
        cdn = HubSim()
        cdn.repos = self.repos  # the same objects, and repos added later too
        cdn.faults.cdn_refuses_token = True
        cdn.start(host=host)
        self.faults.cdn_redirect = True
        self.faults.cdn_url = cdn.url
        self.faults.redirect_status = status
        return cdn

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def log(self, method: str, path: str, rng: str | None, authorization: str | None = None) -> None:
        with self._lock:
            self.requests.append((method, path, rng))
            self.authorizations.append((path, authorization))

    def gets(self, path_suffix: str) -> list[tuple[str, str, str | None]]:
        """GET requests whose path ends with ``path_suffix``."""
        with self._lock:
            return [r for r in self.requests if r[0] == "GET" and r[1].split("?")[0].endswith(path_suffix)]

    def should_drop(self, key: tuple[str, str]) -> int | None:
        at = self.faults.drop_at.get(key)
        if at is None:
            return None
        with self._lock:
            limit = self.faults.drop_times.get(key)
            if limit is not None and self._dropped.get(key, 0) >= limit:
                return None
            return at

    def note_drop(self, key: tuple[str, str]) -> None:
        with self._lock:
            self._dropped[key] = self._dropped.get(key, 0) + 1


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "hubsim/1"

    def log_message(self, format: str, *args: object) -> None:  # quiet
        pass

    @property
    def sim(self) -> HubSim:
        return self.server.sim  # type: ignore[attr-defined]

    # ---- plumbing -----------------------------------------------------------------------------
    def _send(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None,
              ctype: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, data: object, headers: dict[str, str] | None = None) -> None:
        if self.sim.faults.api_html:
            self._send(200, b"<html><body>Welcome to nginx!</body></html>", headers, ctype="text/html")
            return
        self._send(200, json.dumps(data).encode(), headers)

    def _error(self, status: int, code: str | None, message: str, headers: dict[str, str] | None = None) -> None:
        h = dict(headers or {})
        if code:
            h["X-Error-Code"] = code
        h["X-Error-Message"] = message
        self._send(status, json.dumps({"error": message}).encode(), h)

    def _auth_ok(self) -> bool:
        want = self.sim.faults.token
        if want is None:
            return True
        got = self.headers.get("Authorization")
        if not got:
            self._error(401, None, "Authentication required")
            return False
        if got != f"Bearer {want}":
            self._error(403, None, "Forbidden: token cannot read this repo")
            return False
        return True

    def _find(self, repo_id: str, rev: str) -> tuple[SimRepo, str, dict[str, SimFile]] | None:
        repo = self.sim.repos.get(repo_id)
        if repo is None:
            self._error(404, "RepoNotFound", "Repository not found")
            return None
        commit = repo.refs.get(rev, rev if rev in repo.commits else None)
        if commit is None:
            self._error(404, "RevisionNotFound", "Invalid rev id: " + rev)
            return None
        return repo, commit, repo.commits[commit]

    # ---- routes -------------------------------------------------------------------------------
    def do_HEAD(self) -> None:
        self._route()

    def do_GET(self) -> None:
        self._route()

    def _route(self) -> None:
        self.sim.log(self.command, self.path, self.headers.get("Range"), self.headers.get("Authorization"))
        parts = urlsplit(self.path)
        raw, query = parts.path, parse_qs(parts.query)
        try:
            if raw == "/api/agent-harnesses":
                self._json({"standardEnvVars": [], "harnesses": {}})
            elif raw.startswith(("/cdn/", "/xet-bridge-us/")):
                self._cdn(raw.rsplit("/", 1)[1])
            elif not self._auth_ok():
                return
            elif "/xet-read-token/" in raw:
                # The Hub answers with a token for its Xet CAS, which no on-prem mirror can reach
                # (huggingface_hub#4475); a client that gets here has taken the Xet path.
                self._error(404, None, "hubsim has no Xet CAS: fetch over the LFS-compatible /resolve route")
            elif raw.startswith("/api/models/"):
                self._api(raw[len("/api/models/"):], query)
            elif "/resolve/" in raw:
                repo_id, _, rest = raw.lstrip("/").partition("/resolve/")
                rev, _, path = rest.partition("/")
                self._resolve(unquote(repo_id), unquote(rev), unquote(path))
            else:
                self._error(404, None, "Not found")
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def _api(self, rest: str, query: dict[str, list[str]]) -> None:
        for marker in ("/tree/", "/revision/"):
            if marker in rest:
                repo_id, _, tail = rest.partition(marker)
                break
        else:
            repo_id, marker, tail = rest.removesuffix("/refs"), ("/refs" if rest.endswith("/refs") else ""), ""
        repo_id = unquote(repo_id)
        if marker == "/refs":
            repo = self.sim.repos.get(repo_id)
            if repo is None:
                return self._error(404, "RepoNotFound", "Repository not found")
            return self._json({"branches": [{"name": n, "ref": f"refs/heads/{n}", "targetCommit": c}
                                            for n, c in repo.refs.items()], "tags": [], "converts": []})
        if marker == "/tree/":
            rev, _, path = tail.partition("/")
            return self._tree(repo_id, unquote(rev), unquote(path), query)
        found = self._find(repo_id, unquote(tail) if marker else "main")
        if found is None:
            return
        _, commit, files = found
        blobs = query.get("blobs", ["false"])[0].lower() == "true"
        siblings = []
        for f in files.values():
            s: dict = {"rfilename": f.path}
            if blobs:
                s.update(size=f.size, blobId=f.oid)
                if f.lfs:
                    s["lfs"] = {"sha256": f.sha256, "size": f.size, "pointerSize": 134}
            siblings.append(s)
        self._json({"id": repo_id, "modelId": repo_id, "sha": commit, "siblings": siblings, "private": False,
                    "gated": False, "disabled": False, "tags": [], "downloads": 0, "likes": 0,
                    "lastModified": "2024-01-01T00:00:00.000Z"})

    def _tree(self, repo_id: str, rev: str, path: str, query: dict[str, list[str]]) -> None:
        found = self._find(repo_id, rev)
        if found is None:
            return
        _, commit, files = found
        recursive = query.get("recursive", ["false"])[0].lower() == "true"
        prefix = path.rstrip("/") + "/" if path else ""
        entries: list[dict] = []
        dirs: set[str] = set()
        for f in sorted(files.values(), key=lambda x: x.path):
            if not f.path.startswith(prefix):
                continue
            rel = f.path[len(prefix):]
            parts = rel.split("/")
            for i in range(1, len(parts)):
                d = prefix + "/".join(parts[:i])
                if (recursive or i == 1) and d not in dirs:
                    dirs.add(d)
                    entries.append({"type": "directory", "path": d,
                                    "oid": hashlib.sha1(f"dir\0{commit}\0{d}".encode()).hexdigest()})
            if not recursive and len(parts) > 1:
                continue
            e: dict = {"type": "file", "path": f.path, "oid": f.oid, "size": f.size}
            if f.lfs:
                e["lfs"] = {"oid": f.sha256, "size": f.size, "pointerSize": 134}
                if self.sim.faults.xet:
                    e["xetHash"] = f.xet_hash
            entries.append(e)
        if path and not entries:
            return self._error(404, "EntryNotFound", f"{path} does not exist", {"X-Repo-Commit": commit})
        entries.extend(self.sim.faults.extra_tree)
        page = self.sim.page_size
        cursor = _decode_cursor(query.get("cursor", [""])[0])
        if cursor is None:
            return self._error(400, None, "Invalid cursor")
        chunk = entries[cursor:cursor + page]
        headers = {}
        if cursor + page < len(entries):
            base = f"{self.sim.url}/api/models/{repo_id}/tree/{quote(rev, safe='')}"
            if path:
                base += "/" + quote(path, safe="")
            headers["Link"] = (f'<{base}?recursive={str(recursive).lower()}&expand=false'
                               f'&cursor={quote(_encode_cursor(cursor + page), safe="")}>; rel="next"')
        self._json(chunk, headers)

    def _resolve(self, repo_id: str, rev: str, path: str) -> None:
        found = self._find(repo_id, rev)
        if found is None:
            return
        _, commit, files = found
        faults = self.sim.faults
        if faults.head_status is not None and self.command == "HEAD":
            return self._send(faults.head_status, b"", {"Allow": "GET"})
        hub_headers = {} if faults.no_repo_commit else {"X-Repo-Commit": faults.wrong_repo_commit or commit}
        f = files.get(path)
        if f is None:
            return self._error(404, "EntryNotFound", f"{path} does not exist", hub_headers)
        hub_headers.update({"ETag": f'"{f.etag}"', "X-Linked-Etag": f'"{f.etag}"', "X-Linked-Size": str(f.size)})
        if faults.xet and f.lfs:
            token_route = f"{self.sim.url}/api/models/{repo_id}/xet-read-token/{commit}"
            hub_headers.update({"X-Xet-Hash": f.xet_hash, "X-Xet-Refresh-Route": token_route,
                                "Link": f'<{token_route}>; rel="xet-auth"'})
        if self.command == "GET":
            for name in faults.head_only:
                hub_headers.pop(name, None)
        pending = faults.fail_status.get((repo_id, path))
        if pending and self.command == "GET":
            return self._error(pending.pop(0), None, "upstream trouble", hub_headers)
        if faults.redirect_loop and f.lfs and self.command == "GET":
            return self._send(302, b"", {**hub_headers, "Location": f"{self.path}?X-Amz-Signature=s3cret"})
        # The Hub redirects HEADs too, with its headers on the 3xx; a same-host "CDN" only gets the GETs, since
        # huggingface_hub 2.x follows a same-origin HEAD redirect and then wants Hub headers on the CDN's answer.
        if (faults.cdn_redirect or faults.xet) and f.lfs and (self.command == "GET" or faults.cdn_url):
            target = f"/xet-bridge-us/{hashlib.sha1(repo_id.encode()).hexdigest()}/{f.xet_hash}" if faults.xet \
                else f"/cdn/{f.sha256}"
            if faults.cdn_url:
                target = f"{faults.cdn_url}{target}?X-Amz-Expires=3600&X-Amz-Signature={os.urandom(8).hex()}"
            hub_headers["Location"] = target
            return self._send(faults.redirect_status, b"", hub_headers)
        self._body(f, hub_headers, (repo_id, path))

    def _cdn(self, digest: str) -> None:
        """An object by its sha256 (/cdn/) or its Xet hash (/xet-bridge-us/): no Hub headers, no token."""
        if self.sim.faults.cdn_refuses_token and self.headers.get("Authorization"):
            return self._error(400, None, "Only one auth mechanism allowed; only the X-Amz-Algorithm query "
                                          "parameter, Signature query string parameter or the Authorization "
                                          "header should be specified")
        for repo in self.sim.repos.values():
            for files in repo.commits.values():
                for f in files.values():
                    if f.lfs and digest in (f.sha256, f.xet_hash):
                        key = next(((repo.repo_id, p) for p, g in files.items() if g is f), (repo.repo_id, f.path))
                        return self._body(f, {}, key)
        self._error(404, None, "no such object")

    def _body(self, f: SimFile, headers: dict[str, str], key: tuple[str, str]) -> None:
        faults = self.sim.faults
        start, end = 0, f.size - 1
        rng = self.headers.get("Range")
        status = 200
        if rng and not faults.ignore_range:
            spec = rng.removeprefix("bytes=")
            a, _, b = spec.partition("-")
            start = int(a) if a else 0
            end = min(int(b), f.size - 1) if b else f.size - 1
            if start >= f.size and f.size > 0:
                return self._error(416, None, "Range Not Satisfiable", {"Content-Range": f"bytes */{f.size}"})
            status = 206
        length = max(0, end - start + 1)
        self.send_response(status)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(length))
        self.send_header("Accept-Ranges", "bytes")
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{end}/{f.size}")
        for k, v in headers.items():
            self.send_header(k, v)
        self.end_headers()
        if self.command == "HEAD":
            return
        drop = self.sim.should_drop(key)
        corrupt = key in faults.corrupt
        if drop is None and not corrupt and faults.throttle is None:
            with open(f.source, "rb") as fh:
                if length:
                    self.wfile.flush()
                    self.connection.sendfile(fh, start, length)
            return
        pos = start
        for chunk in _read(f.source, start, length):
            if corrupt and pos == start == 0:
                chunk = bytes([chunk[0] ^ 0xFF]) + chunk[1:]
            if drop is not None and pos + len(chunk) > drop:
                self.wfile.write(chunk[: max(0, drop - pos)])
                self.wfile.flush()
                self.sim.note_drop(key)
                self.connection.shutdown(socket.SHUT_RDWR)
                self.close_connection = True
                return
            self.wfile.write(chunk)
            pos += len(chunk)
            if faults.throttle:
                self.wfile.flush()
                time.sleep(len(chunk) / faults.throttle)


def _encode_cursor(offset: int) -> str:
    # Opaque, as the Hub's cursors are: a client must follow the Link, not count entries itself.
    return base64.urlsafe_b64encode(json.dumps({"offset": offset}).encode()).decode()


def _decode_cursor(cursor: str) -> int | None:
    if not cursor:
        return 0
    try:
        offset = json.loads(base64.urlsafe_b64decode(cursor.encode()))["offset"]
    except (ValueError, KeyError, TypeError):
        return None
    return offset if isinstance(offset, int) and offset >= 0 else None


def _read(path: Path, start: int, length: int) -> Iterator[bytes]:
    with open(path, "rb") as fh:
        fh.seek(start)
        left = length
        while left > 0:
            chunk = fh.read(min(SEND_CHUNK, left))
            if not chunk:
                return
            left -= len(chunk)
            yield chunk


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("repos", nargs="+", help="ORG/NAME=FOLDER")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--throttle", type=float, default=None)
    args = parser.parse_args()
    sim = HubSim()
    for spec in args.repos:
        repo_id, _, folder = spec.partition("=")
        sim.add_repo(repo_id, Path(folder))
    sim.faults.throttle = args.throttle
    sim.start(args.port)
    print(sim.url, flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        sim.stop()


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
