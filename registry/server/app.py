"""``registry serve``: the Hub's read-only HTTP API over the catalog and the store, as a plain ASGI app.

Thin: parse the raw path, check the token policy, ask ``services.mirror``, render. File bodies stream
from the blob files in bounded chunks (constant memory per connection, nothing hashed per request).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
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
ABORTED = -1  # what _send_file returns for a body cut off mid-send (counted as "resolve aborted")
MAX_FORM = 1024 * 1024
_TRUE = {"1", "true", "True", "yes"}
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_log = logging.getLogger("registry.server")


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
            self.stats[f"{route.kind} {'aborted' if status == ABORTED else status}"] += 1

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
        except FileNotFoundError as exc:
            raise _damaged(hit, "is missing from the store") from exc
        except OSError as exc:
            raise _damaged(hit, f"cannot be read ({exc.strerror})") from exc
        try:
            # A stat, not a re-hash: a blob cut short (or grown) behind the catalog's back is refused before any
            # header goes out, instead of a full Content-Length followed by a short body.
            actual = os.fstat(fd).st_size
            if actual != size:
                raise _damaged(hit, f"holds {actual} bytes where the catalog records {size}")
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
            short = await self._stream(receive, send, fd, start, length)
            if short:
                # The blob shrank while it was being sent: abort the connection (never pad, never complete the
                # response), so the client sees a failed download rather than a short file.
                _log.error("%s@%s %s: the store's blob %s shrank while being sent (%d of %d bytes not sent); the "
                           "connection was aborted; run `registry verify` on the mirror host", hit.repo_id,
                           hit.commit[:12], hit.file.path, hit.file.sha256, short, length)
                await _abort(send)
                return ABORTED
            return status
        finally:
            os.close(fd)

    async def _stream(self, receive: Receive, send: Send, fd: int, offset: int, length: int) -> int:
        """Zero-copy where the server allows it, else bounded chunks read off the event loop. Returns how many
        bytes could not be sent because the blob ended early (0: the whole body went out, or the client left)."""
        sent = await _sendfile(send, fd, offset, length, self.stats) if self.zero_copy else None
        if sent is not None:
            if sent < length:
                return length - sent
            await send({"type": "http.response.body", "body": b"", "more_body": False})
            return 0
        gone = asyncio.ensure_future(_disconnected(receive))
        try:
            remaining = length
            while remaining > 0 and not gone.done():
                data = await to_thread.run_sync(os.pread, fd, min(self.chunk_size, remaining), offset)
                if not data:
                    return remaining
                offset += len(data)
                remaining -= len(data)
                await send({"type": "http.response.body", "body": data, "more_body": remaining > 0})
            return 0
        finally:
            gone.cancel()


def _damaged(hit: FileHit, what: str) -> HttpError:
    """500: the mirror's own store is damaged. Not 502/503, which say "try again soon": this stays wrong until
    the operator repairs the store, and the client can do nothing about it."""
    return HttpError(500, "StoreDamaged", f"{hit.repo_id}@{hit.commit[:12]} {hit.file.path}: the store's blob "
                     f"{hit.file.sha256} {what}; the mirror cannot serve this file until its operator runs "
                     "`registry verify` on the mirror host and repairs the store (re-pull or re-add the model)")


async def _abort(send: Send) -> None:
    """Drop the connection mid-body. Under uvicorn: abort its transport and let it see the connection lost
    (then it neither logs a half response nor reuses the connection); elsewhere returning without completing
    the response makes the server close it."""
    cycle = getattr(send, "__self__", None)
    transport = getattr(cycle, "transport", None)
    if transport is not None and hasattr(transport, "abort"):
        transport.abort()
        if isinstance(getattr(cycle, "disconnected", None), bool):
            cycle.disconnected = True  # what connection_lost will say on the loop's next iteration


async def _sendfile(send: Send, fd: int, offset: int, length: int, stats: Counter[str]) -> int | None:
    """Write the body with ``os.sendfile`` (no copy through Python), under uvicorn on asyncio's loop.

    ASGI has no zero-copy message that uvicorn implements, so this reaches uvicorn's connection object through
    the ``send`` callable it handed us, writes the body with ``loop.sendfile`` (asyncio waits for the
    transport's buffer to drain first, so bytes stay in order), and zeroes uvicorn's count of body bytes still due,
    so the caller's final empty body message completes the response.
    Anything unexpected (another server, uvloop, another uvicorn version): return None before writing a byte,
    and the portable chunked path runs instead. Else the bytes sent: fewer than ``length`` when the file ended
    early (the caller aborts the connection); ``length`` when all went out or the client went away.
    """
    cycle = getattr(send, "__self__", None)
    transport = getattr(cycle, "transport", None)
    if (transport is None or not isinstance(getattr(cycle, "expected_content_length", None), int)
            or cycle.expected_content_length != length
            or getattr(transport, "_sendfile_compatible", None) is None or transport.is_closing()):
        return None
    loop = asyncio.get_running_loop()
    if not isinstance(loop, asyncio.BaseEventLoop):
        return None
    stats["zero-copy"] += 1  # counted before the client can have the whole body
    sent = length
    with os.fdopen(os.dup(fd), "rb") as f:
        try:
            sent = await loop.sendfile(transport, f, offset, length, fallback=False)
        except (asyncio.SendfileNotAvailableError, NotImplementedError):
            stats["zero-copy"] -= 1
            return None  # nothing was written yet
        except OSError:
            transport.close()  # the client went away mid-body
    if sent < length:
        return sent  # the file ended early: the caller aborts; uvicorn must not think the body complete
    cycle.expected_content_length = 0  # the body went out beside uvicorn: the caller ends it with an empty body
    return length


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
        except RecursionError as exc:
            raise HttpError(400, "BadRequest", "paths-info: the JSON body is nested too deeply; send "
                            '{"paths": ["file", ...]}') from exc
        except ValueError as exc:  # also bad UTF-8 and numbers past int()'s digit limit
            raise HttpError(400, "BadRequest", f"paths-info: body is not JSON: {exc}") from exc
        if not isinstance(data, dict):
            raise HttpError(400, "BadRequest", f"paths-info: the JSON body must be an object like "
                            f'{{"paths": ["file", ...]}}, not a {type(data).__name__}')
        paths = data.get("paths", [])
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
    # a header value must hold no control characters (uvicorn refuses them, which would turn this into a 500)
    extra = {"x-error-code": err.code, "x-error-message": _CONTROL.sub(" ", err.message)[:500], **err.headers}
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
