"""``/ui``: the read-only HTML view that ``registry serve`` serves beside the Hub API.

    /ui/                     the fleet: node, model, revision, state, last verified (?node= &model= &state= &page= &per=)
    /ui/models/ORG/NAME      one model (?rev=): components by role with files, sizes and digests, lineage, smoke
                             fingerprints, deployments, its recent events
    /ui/events               the event log (?name= &kind= &since= &before= &per=)
    /ui/login                asks the browser for credentials (HTTP Basic: any user name, the token as password),
                             then shows the fleet as that token sees it

It honours the mirror's token policy (server/auth.py): a protected repo's rows, pages and events are visible only to
a token that may read it; a page you may not see answers like a missing one. Tokens come as ``Authorization: Bearer``
(scripts) or HTTP Basic (browsers). Queries live in services/ (fleet, listing, history); rendering in server/html.py.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, unquote

from anyio import to_thread

from registry.errors import ModelNotFound, UsageError
from registry.manifest.schema import REPO_ID_RE
from registry.server import html
from registry.server.auth import TokenPolicy
from registry.services.context import Registry
from registry.services.fleet import FLEET_STATES, FleetFilter, fleet_counts, fleet_nodes, fleet_rows, model_revisions, \
    readable_names
from registry.services.history import KNOWN_KINDS, history, parse_since
from registry.services.listing import show_model

Scope = MutableMapping[str, Any]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]

DEFAULT_PER_PAGE = 50
MAX_PER_PAGE = 500
MAX_PAGE = 1_000_000
SECURITY_HEADERS = {
    "content-security-policy": "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; "
                               "frame-ancestors 'none'; base-uri 'none'",
    "x-content-type-options": "nosniff", "referrer-policy": "no-referrer", "cache-control": "no-store",
}


class BadQuery(ValueError):
    """A query string the page cannot honour: 400, with what was wrong."""


@dataclass(frozen=True)
class FleetQuery:
    node: str | None = None
    model: str | None = None
    state: str | None = None
    page: int = 1
    per: int = DEFAULT_PER_PAGE


@dataclass(frozen=True)
class EventsQuery:
    name: str | None = None
    kind: str | None = None
    since: str | None = None
    before: int | None = None
    per: int = DEFAULT_PER_PAGE


def _params(query: str) -> dict[str, list[str]]:
    try:
        return parse_qs(query, keep_blank_values=True, strict_parsing=False, max_num_fields=50)
    except ValueError as exc:
        raise BadQuery(f"the query string is not usable: {exc}") from exc


def _text(params: dict[str, list[str]], key: str, max_len: int = 255) -> str | None:
    values = params.get(key, [])
    if len(values) > 1:
        raise BadQuery(f"{key} is given {len(values)} times; give it once")
    value = values[0].strip() if values else ""
    if len(value) > max_len:
        raise BadQuery(f"{key} is longer than {max_len} characters")
    if any(ord(c) < 0x20 or c == "\x7f" for c in value):
        raise BadQuery(f"{key} holds control characters")
    return value or None


def _int(params: dict[str, list[str]], key: str, default: int | None, lo: int, hi: int) -> int | None:
    text = _text(params, key, 12)
    if text is None:
        return default
    if not text.isascii() or not text.isdigit():
        raise BadQuery(f"{key}={text!r}: give a whole number from {lo} to {hi}")
    value = int(text)
    if not lo <= value <= hi:
        raise BadQuery(f"{key}={value}: give a whole number from {lo} to {hi}")
    return value


def parse_fleet_query(query: str) -> FleetQuery:
    p = _params(query)
    state = _text(p, "state", 32)
    if state is not None and state not in FLEET_STATES:
        raise BadQuery(f"state={state!r}: choose one of {', '.join(FLEET_STATES)}")
    model = _text(p, "model", 200)
    if model is not None and not REPO_ID_RE.match(model.partition("@")[0]):
        raise BadQuery(f"model={model!r}: give a model name like org/name")
    return FleetQuery(_text(p, "node"), model, state, _int(p, "page", 1, 1, MAX_PAGE) or 1,
                      _int(p, "per", DEFAULT_PER_PAGE, 1, MAX_PER_PAGE) or DEFAULT_PER_PAGE)


def parse_events_query(query: str) -> EventsQuery:
    p = _params(query)
    kind = _text(p, "kind", 64)
    if kind is not None and kind not in KNOWN_KINDS:
        raise BadQuery(f"kind={kind!r}: choose one of {', '.join(KNOWN_KINDS)}")
    return EventsQuery(_text(p, "name", 1000), kind, _text(p, "since", 64),
                       _int(p, "before", None, 1, 2**62), _int(p, "per", DEFAULT_PER_PAGE, 1, MAX_PER_PAGE)
                       or DEFAULT_PER_PAGE)


def bearer_from(headers: dict[str, str]) -> str | None:
    """The token as ``Bearer T``, from a Bearer header or from Basic credentials (the password is the token)."""
    value = headers.get("authorization")
    if not value:
        return None
    scheme, _, rest = value.partition(" ")
    if scheme.lower() == "bearer":
        return value
    if scheme.lower() == "basic":
        try:
            decoded = base64.b64decode(rest.strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return None
        _, _, password = decoded.partition(":")
        return f"Bearer {password}" if password else None
    return None


@dataclass(frozen=True)
class _Reply:
    status: int
    body: str
    headers: dict[str, str]


class UiApp:
    def __init__(self, reg: Registry, policy: TokenPolicy) -> None:
        self.reg, self.policy = reg, policy

    async def __call__(self, scope: Scope, send: Send, headers: dict[str, str]) -> int:
        path = (scope.get("raw_path") or scope["path"].encode()).decode("latin-1").split("?", 1)[0]
        query = scope.get("query_string", b"").decode("latin-1")
        auth = bearer_from(headers)
        user = self._user(auth)
        if scope["method"] not in ("GET", "HEAD"):
            reply = _Reply(405, html.error_page(405, f"{scope['method']} is not allowed: the page is read-only",
                                                user=user), {"allow": "GET, HEAD"})
        else:
            reply = await to_thread.run_sync(self._route, path, query, auth, user)
        body = b"" if scope["method"] == "HEAD" else reply.body.encode()
        head = {"content-type": "text/html; charset=utf-8", "content-length": str(len(reply.body.encode())),
                **SECURITY_HEADERS, **reply.headers}
        await send({"type": "http.response.start", "status": reply.status,
                    "headers": [(k.encode(), v.encode("latin-1")) for k, v in head.items()]})
        await send({"type": "http.response.body", "body": body, "more_body": False})
        return reply.status

    def _user(self, auth: str | None) -> str | None:
        grant = self.policy.grant_for(auth) if auth else None
        return grant.name if grant else None

    def _allowed(self, auth: str | None) -> Callable[[str], bool]:
        return lambda repo: self.policy.check(repo, auth).allowed

    def _readable(self, session: Any, auth: str | None) -> frozenset[str] | None:
        if not self.policy.protected:
            return None
        return readable_names(session, self._allowed(auth))

    def _route(self, path: str, query: str, auth: str | None, user: str | None) -> _Reply:
        now = dt.datetime.now(dt.timezone.utc)
        try:
            if path == "/ui":
                return _Reply(302, "", {"location": "/ui/" + (f"?{query}" if query else "")})
            if path == "/ui/":
                return self._fleet(parse_fleet_query(query), auth, user, now)
            if path == "/ui/events":
                return self._events(parse_events_query(query), auth, user, now)
            if path == "/ui/login":
                # signed in: the fleet, as this user sees it (browsers then send the credentials for every page
                # under /ui/, the challenge's protection space)
                if user:
                    return self._fleet(parse_fleet_query(query), auth, user, now)
                return self._challenge("sign in with any user name and a token from the mirror's token file")
            if path.startswith("/ui/models/"):
                name = unquote(path[len("/ui/models/"):])
                return self._model(name, parse_qs(query).get("rev", [None])[0], auth, user, now)
        except BadQuery as exc:
            return _Reply(400, html.error_page(400, str(exc), user=user), {})
        except UsageError as exc:
            return _Reply(400, html.error_page(400, exc.message, user=user), {})
        return _Reply(404, html.error_page(404, "no such page", user=user), {})

    def _challenge(self, message: str) -> _Reply:
        return _Reply(401, html.error_page(401, message, user=None),
                      {"www-authenticate": 'Basic realm="registry", charset="UTF-8"'})

    def _fleet(self, q: FleetQuery, auth: str | None, user: str | None, now: dt.datetime) -> _Reply:
        with self.reg.catalog.reader() as session:
            readable = self._readable(session, auth)
            flt = FleetFilter(node=q.node, models=(q.model,) if q.model else (), state=q.state, readable=readable)
            try:
                counts = fleet_counts(session, flt)
            except ModelNotFound:
                counts, flt = {}, None
            rows = fleet_rows(session, flt, limit=q.per, offset=(q.page - 1) * q.per) if flt else []
            nodes = fleet_nodes(session, readable)
        body = html.fleet_page(rows=rows, counts=counts, nodes=nodes, node=q.node, model=q.model,
                               chosen_state=q.state, page_no=q.page, per=q.per, user=user, now=now)
        return _Reply(200, body, {})

    def _model(self, name: str, rev: str | None, auth: str | None, user: str | None, now: dt.datetime) -> _Reply:
        if not REPO_ID_RE.match(name) or (rev is not None and (len(rev) > 255 or not rev.isprintable())):
            return _Reply(404, html.error_page(404, "no such model", user=user), {})
        access = self.policy.check(name, auth)
        if not access.allowed:
            if not access.authenticated:
                return self._challenge(f"{name} needs a token that may read it")
            return _Reply(404, html.error_page(404, f"no model named {name!r} here", user=user), {})
        try:
            detail = show_model(self.reg, f"{name}@{rev}" if rev else name)
        except ModelNotFound:
            return _Reply(404, html.error_page(404, f"no model named {name!r}"
                                               + (f" at {rev!r}" if rev else "") + " here", user=user), {})
        allowed = self._allowed(auth)
        hidden = sorted({c.repo for c in detail.components if not allowed(c.repo)})
        with self.reg.catalog.reader() as session:
            deployments = fleet_rows(session, FleetFilter(models=(name,)))
            revisions = model_revisions(session, name)
        events = history(self.reg, name=name, limit=20).events
        body = html.model_page(detail=detail, revisions=revisions, deployments=deployments, events=events,
                               hidden_repos=hidden, user=user, now=now)
        return _Reply(200, body, {})

    def _events(self, q: EventsQuery, auth: str | None, user: str | None, now: dt.datetime) -> _Reply:
        with self.reg.catalog.reader() as session:
            readable = self._readable(session, auth)
        # with a policy, only events about readable models show: those about the store or a node stay hidden
        page = history(self.reg, name=q.name, since=parse_since(q.since) if q.since else None,
                       kinds=(q.kind,) if q.kind else (), limit=q.per, before=q.before, readable=readable)
        body = html.events_page(events=page.events, older=page.older, name=q.name, kind=q.kind, since=q.since,
                                per=q.per, user=user, now=now)
        return _Reply(200, body, {})

