"""``registry serve``: the Hub's read-only HTTP API over the catalog and the store, as a plain ASGI app.

Thin: parse the raw path, check the token policy, ask ``services.mirror``, render. File bodies stream
from the blob files in bounded chunks (constant memory per connection, nothing hashed per request).
"""

from __future__ import annotations

import asyncio
import json
import os
from collections import Counter
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import parse_qs

from anyio import to_thread

from registry.errors import EntryNotFound, NotFound, RegistryError, RepoNotFound, RevisionNotFound
from registry.server import render
from registry.server.auth import TokenPolicy
from registry.server.ranges import ByteRange, parse_range
from registry.server.routing import Route, parse
from registry.server.ui import UiApp
from registry.services.mirror import FileHit, Mirror

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]

CHUNK = 1024 * 1024
MAX_FORM = 1024 * 1024
_TRUE = {"1", "true", "True", "yes"}


class HttpError(Exception):
    """A 4xx/5xx answer: status, the Hub's ``X-Error-Code`` and a message (plus extra headers)."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers or {}


def _from_registry(exc: RegistryError) -> HttpError:
    if isinstance(exc, EntryNotFound):
        commit = exc.details.get("commit")
        return HttpError(404, "EntryNotFound", exc.message, {"x-repo-commit": commit} if commit else None)
    if isinstance(exc, RevisionNotFound):
        return HttpError(404, "RevisionNotFound", exc.message)
    if isinstance(exc, (RepoNotFound, NotFound)):
        return HttpError(404, "RepoNotFound", exc.message)
    return HttpError(500, type(exc).__name__, exc.message)


class MirrorApp:
    def __init__(self, mirror: Mirror, policy: TokenPolicy | None = None, *, chunk_size: int = CHUNK,
                 zero_copy: bool = True, ui: UiApp | None = None) -> None:
        self.mirror = mirror
        self.policy = policy or TokenPolicy.open()
        self.ui = ui  # the read-only HTML view at /ui (server/ui.py)
        self.chunk_size = chunk_size
        self.zero_copy = zero_copy
        self.stats: Counter[str] = Counter()  # "kind status" -> count; read by tests and the benchmark

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        raw = scope.get("raw_path") or scope["path"].encode()
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        if self.ui is not None and (raw == b"/ui" or raw.startswith((b"/ui/", b"/ui?"))):
            status = await self.ui(scope, send, headers)
            self.stats[f"ui {status}"] += 1
            return
        route = parse(raw)
        status = 500
        try:
            status = await self._dispatch(scope, receive, send, route, headers)
        except HttpError as err:
            status = err.status
            await _send_error(send, err)
        except RegistryError as exc:
            err = _from_registry(exc)
            status = err.status
            await _send_error(send, err)
        finally:
            self.stats[f"{route.kind} {status}"] += 1

    async def _dispatch(self, scope: Scope, receive: Receive, send: Send, route: Route,
                        headers: dict[str, str]) -> int:
        method = scope["method"]
        if route.kind == "harnesses":
            return await _send_json(send, 200, {"standardEnvVars": [], "harnesses": {}})
        if route.kind == "unknown":
            raise HttpError(404, "RepoNotFound" if route.repo_id else "EntryNotFound",
                            "not a route of this mirror (it serves model repos, read-only)")
        self._authorize(route.repo_id, headers.get("authorization"))
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        if route.kind == "resolve":
            _allow(method, "GET", "HEAD")
            hit = await to_thread.run_sync(self.mirror.file, route.repo_id, route.revision, route.path)
            return await self._send_file(scope, receive, send, hit, headers.get("range"))
        if route.kind == "paths-info":
            _allow(method, "POST")
            paths = await _form_paths(receive, headers.get("content-type", ""))
            commit, entries = await to_thread.run_sync(self.mirror.paths_info, route.repo_id, route.revision, paths)
            return await _send_json(send, 200, [render.tree_entry(e) for e in entries], {"x-repo-commit": commit})
        _allow(method, "GET", "HEAD")
        if route.kind == "info":
            view = await to_thread.run_sync(self.mirror.revision, route.repo_id, route.revision)
            blobs = any(v in _TRUE for v in query.get("blobs", []))
            return await _send_json(send, 200, render.repo_info(view, blobs=blobs), {"x-repo-commit": view.commit})
        if route.kind == "tree":
            recursive = any(v in _TRUE for v in query.get("recursive", []))
            commit, entries = await to_thread.run_sync(
                lambda: self.mirror.tree(route.repo_id, route.revision, route.path, recursive=recursive))
            return await _send_json(send, 200, [render.tree_entry(e) for e in entries], {"x-repo-commit": commit})
        if route.kind == "refs":
            views = await to_thread.run_sync(self.mirror.refs, route.repo_id)
            prs = any(v in _TRUE for v in query.get("include_prs", []))
            return await _send_json(send, 200, render.refs(views, include_prs=prs))
        raise HttpError(404, "EntryNotFound", "not a route of this mirror")

    def _authorize(self, repo_id: str, authorization: str | None) -> None:
        access = self.policy.check(repo_id, authorization)
        if access.allowed:
            return
        # The same answer whether or not the repo exists: nothing leaks.
        if access.authenticated:
            raise HttpError(404, "RepoNotFound", f"repository {repo_id!r} is not on this mirror")
        raise HttpError(401, "RepoNotFound", "repository not found, or a valid token is needed: set HF_TOKEN",
                        {"www-authenticate": 'Bearer realm="registry"'})

    async def _send_file(self, scope: Scope, receive: Receive, send: Send, hit: FileHit, range_header: str | None
                         ) -> int:
        size = hit.file.size
        etag = f'"{hit.file.etag}"'
        meta = {"x-repo-commit": hit.commit, "etag": etag, "x-linked-etag": etag, "x-linked-size": str(size),
                "accept-ranges": "bytes"}
        wanted: ByteRange | None = None
        if range_header:
            wanted = parse_range(range_header, size)
            if wanted is not None and wanted.unsatisfiable:
                raise HttpError(416, "RangeNotSatisfiable", f"range {range_header!r} is outside the {size} bytes",
                                {**meta, "content-range": f"bytes */{size}"})
        try:
            fd = os.open(hit.blob_path, os.O_RDONLY)
        except OSError as exc:
            raise HttpError(500, "StorageError", f"the store cannot read {hit.file.sha256}: {exc}; "
                            "run `registry verify` on the mirror host") from exc
        try:
            start, length, status = 0, size, 200
            if wanted is not None:
                start, length, status = wanted.start, wanted.length, 206
                meta["content-range"] = f"bytes {wanted.start}-{wanted.start + wanted.length - 1}/{size}"
            head = [(b"content-length", str(length).encode()), (b"content-type", b"application/octet-stream")]
            await send({"type": "http.response.start", "status": status,
                        "headers": head + [(k.encode(), v.encode()) for k, v in meta.items()]})
            if scope["method"] == "HEAD" or length == 0:
                await send({"type": "http.response.body", "body": b"", "more_body": False})
                return status
            await self._stream(receive, send, fd, start, length)
            return status
        finally:
            os.close(fd)

    async def _stream(self, receive: Receive, send: Send, fd: int, offset: int, length: int) -> None:
        """Zero-copy where the server allows it, else bounded chunks read off the event loop."""
        if self.zero_copy and await _sendfile(send, fd, offset, length, self.stats):
            await send({"type": "http.response.body", "body": b"", "more_body": False})
            return
        gone = asyncio.ensure_future(_disconnected(receive))
        try:
            remaining = length
            while remaining > 0 and not gone.done():
                data = await to_thread.run_sync(os.pread, fd, min(self.chunk_size, remaining), offset)
                if not data:
                    raise OSError(f"blob shrank while being sent ({remaining} bytes short)")
                offset += len(data)
                remaining -= len(data)
                await send({"type": "http.response.body", "body": data, "more_body": remaining > 0})
        finally:
            gone.cancel()


async def _sendfile(send: Send, fd: int, offset: int, length: int, stats: Counter[str]) -> bool:
    """Write the body with ``os.sendfile`` (no copy through Python), under uvicorn on asyncio's loop.

    ASGI has no zero-copy message that uvicorn implements, so this reaches uvicorn's connection object through
    the ``send`` callable it handed us, writes the body with ``loop.sendfile`` (asyncio waits for the
    transport's buffer to drain first, so bytes stay in order), and zeroes uvicorn's count of body bytes still due,
    so the caller's final empty body message completes the response.
    Anything unexpected (another server, uvloop, another uvicorn version): return False before writing a byte,
    and the portable chunked path runs instead.
    """
    cycle = getattr(send, "__self__", None)
    transport = getattr(cycle, "transport", None)
    if (transport is None or not isinstance(getattr(cycle, "expected_content_length", None), int)
            or cycle.expected_content_length != length
            or getattr(transport, "_sendfile_compatible", None) is None or transport.is_closing()):
        return False
    loop = asyncio.get_running_loop()
    if not isinstance(loop, asyncio.BaseEventLoop):
        return False
    stats["zero-copy"] += 1  # counted before the client can have the whole body
    with os.fdopen(os.dup(fd), "rb") as f:
        try:
            await loop.sendfile(transport, f, offset, length, fallback=False)
        except (asyncio.SendfileNotAvailableError, NotImplementedError):
            stats["zero-copy"] -= 1
            return False  # nothing was written yet
        except OSError:
            transport.close()  # the client went away mid-body
    cycle.expected_content_length = 0  # the body went out beside uvicorn: the caller ends it with an empty body
    return True


async def _disconnected(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


def _allow(method: str, *allowed: str) -> None:
    if method not in allowed:
        raise HttpError(405, "MethodNotAllowed", f"{method} is not allowed here; use {' or '.join(allowed)}",
                        {"allow": ", ".join(allowed)})


async def _form_paths(receive: Receive, content_type: str) -> list[str]:
    body = b""
    while True:
        msg = await receive()
        body += msg.get("body", b"")
        if len(body) > MAX_FORM:
            raise HttpError(413, "PayloadTooLarge", f"paths-info takes at most {MAX_FORM} bytes of form data")
        if not msg.get("more_body"):
            break
    if "json" in content_type:
        try:
            data = json.loads(body or b"{}")
        except ValueError as exc:
            raise HttpError(400, "BadRequest", f"paths-info: body is not JSON: {exc}") from exc
        paths = data.get("paths", []) if isinstance(data, dict) else []
        if isinstance(paths, str):
            paths = [paths]
    else:
        paths = parse_qs(body.decode("utf-8", "replace")).get("paths", [])
    if not isinstance(paths, list) or not all(isinstance(p, str) for p in paths):
        raise HttpError(400, "BadRequest", "paths-info: 'paths' must be a list of strings")
    return paths


async def _send_json(send: Send, status: int, data: Any, extra: dict[str, str] | None = None) -> int:
    body = json.dumps(data, separators=(",", ":")).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    headers += [(k.encode(), v.encode()) for k, v in (extra or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})
    return status


async def _send_error(send: Send, err: HttpError) -> None:
    extra = {"x-error-code": err.code, "x-error-message": err.message.replace("\n", " ")[:500], **err.headers}
    await _send_json(send, err.status, {"error": err.message}, extra)


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        msg = await receive()
        if msg["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif msg["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


def create_app(reg: Any, policy: TokenPolicy | None = None) -> MirrorApp:
    """The mirror app over an open ``Registry``."""
    policy = policy or TokenPolicy.open()
    return MirrorApp(Mirror(reg), policy, ui=UiApp(reg, policy))
