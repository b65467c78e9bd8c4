"""The ``/ui`` pages, rendered to HTML strings from the services' frozen results. No JavaScript at all: links and
GET forms carry every filter in the query string, so each view has a URL. Everything user-controlled is escaped."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable, Mapping, Sequence
from html import escape
from urllib.parse import quote, urlencode

from registry.services.fleet import FLEET_STATES, QUARANTINED, FleetRow
from registry.services.history import KNOWN_KINDS, EventView
from registry.services.listing import ModelDetail
from registry.units import human_size as size

CSS = """
:root{--fg:#1d2330;--mut:#667085;--line:#e4e7ec;--bg:#f8f9fb;--acc:#2952cc}
*{box-sizing:border-box}body{margin:0;font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:var(--fg);background:var(--bg)}
header{background:#101828;color:#fff;padding:10px 24px;display:flex;gap:24px;align-items:center}
header a{color:#d0d5dd;text-decoration:none}header a.on,header a:hover{color:#fff}header b{font-size:16px;margin-right:12px}
header .who{margin-left:auto;color:#98a2b3;font-size:13px}
main{padding:18px 24px;max-width:1500px}h1{font-size:20px;margin:4px 0 12px}h2{font-size:16px;margin:22px 0 8px}
table{border-collapse:collapse;width:100%;background:#fff;border:1px solid var(--line)}
th,td{padding:6px 10px;border-bottom:1px solid var(--line);text-align:left;vertical-align:top}
th{background:#f2f4f7;font-weight:600;font-size:12px;text-transform:uppercase;letter-spacing:.03em;color:#475467}
tr:nth-child(even) td{background:#fcfcfd}td.num{text-align:right;font-variant-numeric:tabular-nums}
code,.mono{font:12px/1.4 ui-monospace,SFMono-Regular,Menlo,monospace}a{color:var(--acc)}
.st{display:inline-block;padding:1px 8px;border-radius:10px;font-size:12px;font-weight:600;background:#eef;color:#334}
.st-ok,.st-registered,.st-signed{background:#dcfae6;color:#067647}.st-stale,.st-unsigned,.st-verified{background:#fef0c7;color:#93370d}
.st-drifted,.st-missing,.st-quarantined,.st-bad-signature,.st-unregistered{background:#fee4e2;color:#b42318}
form.f{display:flex;gap:10px;flex-wrap:wrap;align-items:end;margin:0 0 12px}form.f label{font-size:12px;color:var(--mut);display:flex;flex-direction:column;gap:2px}
input,select,button{font:inherit;padding:4px 8px;border:1px solid #d0d5dd;border-radius:6px;background:#fff}button{background:var(--acc);color:#fff;border:0;padding:5px 14px}
.counts{display:flex;gap:8px;margin:0 0 12px;flex-wrap:wrap}.counts a{text-decoration:none}
.pager{margin:12px 0;display:flex;gap:14px;align-items:center;color:var(--mut)}.mut{color:var(--mut)}
dl.kv{display:grid;grid-template-columns:max-content 1fr;gap:4px 16px;margin:0;background:#fff;border:1px solid var(--line);padding:12px 16px}
dl.kv dt{color:var(--mut)}dl.kv dd{margin:0}.detail{color:#b42318;font-size:12px}
table.files{table-layout:fixed}table.files td{overflow:hidden;text-overflow:ellipsis;white-space:nowrap}
table.files th:nth-child(1){width:36%}table.files th:nth-child(2){width:9%}table.files th:nth-child(3),
table.files th:nth-child(4){width:20%}table.fleet td:nth-child(-n+3),table.fleet td:nth-child(7){white-space:nowrap}
table.fleet td:nth-child(5){font-size:12px;min-width:150px}
table.events td:nth-child(-n+6){white-space:nowrap}table.events td:nth-child(2){font-size:12px}table.files th:nth-child(5){width:10%}.st-sig{background:#f2f4f7;color:#475467}
"""


def esc(value: object) -> str:
    return escape("" if value is None else str(value), quote=True)


def when(value: dt.datetime | None, now: dt.datetime) -> str:
    if value is None:
        return '<span class="mut">never</span>'
    secs = max(0, int((now - value).total_seconds()))
    ago = (f"{secs} s" if secs < 90 else f"{secs // 60} min" if secs < 5400 else f"{secs // 3600} h"
           if secs < 172800 else f"{secs // 86400} d")
    return f'<span title="{esc(value.isoformat())}">{esc(value.strftime("%Y-%m-%d %H:%M"))} UTC</span> ' \
           f'<span class="mut">({ago} ago)</span>'


def state(value: str) -> str:
    return f'<span class="st st-{esc(value)}">{esc(value)}</span>'


def short(digest: str | None, n: int = 12) -> str:
    if not digest:
        return ""
    return f'<code title="{esc(digest)}">{esc(digest[:n])}</code>'


def path_cell(path: str, limit: int = 64) -> str:
    shown = path if len(path) <= limit else path[:20] + "…" + path[-(limit - 21):]
    return f'<span class="mono" title="{esc(path)}">{esc(shown)}</span>'


def model_href(name: str, commit: str | None = None) -> str:
    return "/ui/models/" + quote(name, safe="/") + (f"?rev={quote(commit)}" if commit else "")


def href(path: str, params: Mapping[str, object]) -> str:
    clean = {k: v for k, v in params.items() if v not in (None, "")}
    return path + ("?" + urlencode(clean) if clean else "")


def table(headers: Sequence[str], rows: Iterable[Sequence[str]], numeric: Sequence[int] = (), cls: str = "") -> str:
    head = "".join(f"<th>{esc(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f'<td class="num">{c}</td>' if i in numeric else f"<td>{c}</td>"
                                    for i, c in enumerate(r)) + "</tr>" for r in rows)
    return f'<table class="{cls}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def page(title: str, body: str, *, user: str | None, active: str) -> str:
    nav = "".join(f'<a href="{u}" class="{"on" if k == active else ""}">{esc(t)}</a>'
                  for k, u, t in (("fleet", "/ui/", "Fleet"), ("events", "/ui/events", "Events")))
    who = f"signed in as {esc(user)}" if user else 'anonymous · <a href="/ui/login">sign in</a>'
    return ("<!doctype html><html lang=en><head><meta charset=utf-8>"
            '<meta name=viewport content="width=device-width,initial-scale=1">'
            f"<title>{esc(title)} · registry</title><style>{CSS}</style></head><body>"
            f'<header><b>registry</b>{nav}<span class="who">{who}</span></header><main>{body}</main></body></html>')


def error_page(status: int, message: str, *, user: str | None) -> str:
    return page(f"{status}", f"<h1>{status}</h1><p>{esc(message)}</p><p><a href=\"/ui/\">back to the fleet</a></p>",
                user=user, active="")


def _select(name: str, options: Sequence[str], chosen: str | None, blank: str) -> str:
    opts = [f'<option value="">{esc(blank)}</option>'] + [
        f'<option value="{esc(o)}"{" selected" if o == chosen else ""}>{esc(o)}</option>' for o in options]
    return f'<select name="{esc(name)}">{"".join(opts)}</select>'


def fleet_page(*, rows: Sequence[FleetRow], counts: Mapping[str, int], nodes: Sequence[str], node: str | None,
               model: str | None, chosen_state: str | None, page_no: int, per: int, user: str | None,
               now: dt.datetime) -> str:
    total = sum(counts.values())
    shown = counts.get(chosen_state, 0) if chosen_state else total
    pages = max(1, -(-shown // per))
    params = {"node": node, "model": model, "state": chosen_state, "per": per if per != 50 else None}
    form = (f'<form class="f" method="get" action="/ui/"><label>node {_select("node", nodes, node, "all nodes")}'
            f'</label><label>model <input name="model" value="{esc(model)}" placeholder="org/name" size="28"></label>'
            f'<label>state {_select("state", FLEET_STATES, chosen_state, "any state")}</label>'
            f'<label>per page <input name="per" value="{per}" size="4"></label><button>filter</button></form>')
    chips = " ".join(f'<a href="{esc(href("/ui/", {**params, "state": s, "page": None}))}">{state(s)} {n:,}</a>'
                     for s, n in counts.items())
    chips = f'<div class="counts">{chips or "<span class=mut>no deployments</span>"}</div>'
    body_rows = []
    for r in rows:
        detail = r.drift.summary()
        if r.state == "stale" and r.newest_commit:
            detail = f"newer: {r.newest_commit[:12]}"
        elif r.state in (QUARANTINED, "unregistered"):
            detail = r.model_state_reason or r.model_state
        verified = when(r.verified_at, now) + (f' <span class="mut">by {esc(r.verified_by)}</span>'
                                               if r.verified_by else "")
        body_rows.append([
            esc(r.node), f'<a href="{esc(model_href(r.name, r.commit))}">{esc(r.name)}</a>', short(r.commit),
            state(r.state) + (f'<div class="detail">{esc(detail[:160])}</div>' if detail else ""),
            verified, path_cell(r.path), esc(r.layout),
            state(r.signature) if r.signature == r.state else f'<span class="st st-sig">{esc(r.signature)}</span>'])
    grid = table(["node", "model", "revision", "state", "last verified", "path", "layout", "signature"], body_rows,
                 cls="fleet")
    nav = []
    if page_no > 1:
        nav.append(f'<a href="{esc(href("/ui/", {**params, "page": None}))}">« first</a>')
        nav.append(f'<a href="{esc(href("/ui/", {**params, "page": page_no - 1}))}">‹ prev</a>')
    nav.append(f"page {page_no:,} of {pages:,} · {_n(shown, 'deployment')}")
    if page_no < pages:
        nav.append(f'<a href="{esc(href("/ui/", {**params, "page": page_no + 1}))}">next ›</a>')
        nav.append(f'<a href="{esc(href("/ui/", {**params, "page": pages}))}">last »</a>')
    pager = f'<div class="pager">{" ".join(nav)}</div>'
    heading = (f"<h1>Fleet <span class=mut>· {_n(total, 'deployment')} on {_n(len(nodes), 'node')}</span></h1>")
    return page("Fleet", heading + form + chips + grid + pager, user=user, active="fleet")


def _n(count: int, word: str) -> str:
    return f"{count:,} {word}{'' if count == 1 else 's'}"


def _kv(pairs: Sequence[tuple[str, str]]) -> str:
    return '<dl class="kv">' + "".join(f"<dt>{esc(k)}</dt><dd>{v}</dd>" for k, v in pairs) + "</dl>"


def model_page(*, detail: ModelDetail, revisions: Sequence[tuple[str, str]], deployments: Sequence[FleetRow],
               events: Sequence[EventView], hidden_repos: Sequence[str], user: str | None, now: dt.datetime) -> str:
    s = detail.summary
    revs = " ".join(f'<a href="{esc(model_href(s.name, c))}">{short(c)}</a> {state(st)}' for c, st in revisions)
    head = (f"<h1>{esc(s.name)} <span class=mut>@ {esc(s.commit[:12])}</span> {state(s.state)}</h1>"
            + _kv([("commit", f"<code>{esc(s.commit)}</code>"), ("refs", esc(", ".join(s.refs)) or "—"),
                   ("family", esc(s.family) + (" (inferred manifest)" if s.inferred else "")),
                   ("state", state(s.state) + (f" {esc(s.state_reason)}" if s.state_reason else "")),
                   ("root digest", f"<code>{esc(s.root_digest)}</code>"),
                   ("files", f"{s.files:,} · {size(s.bytes)}"), ("manifest", esc(detail.manifest_source or "—")),
                   ("revisions", revs)]))
    parts = [head, "<h2>Components</h2>"]
    for c in detail.components:
        title = (f"{state(c.role)} {esc(c.repo)} @ {short(c.commit)} · "
                 f"{'required' if c.required else 'optional'} · {'pinned' if c.pinned else 'unpinned'}")
        if c.repo in hidden_repos:
            parts.append(f"<p>{title} · <span class=mut>files hidden: your token cannot read {esc(c.repo)}</span></p>")
            continue
        rows = [[f'<span class="mono">{esc(f.path)}</span>', size(f.size), short(f.sha256, 16), short(f.blake3, 16),
                 short(f.git_oid, 12), "LFS" if f.lfs else ""] for f in c.files]
        parts.append(f"<p>{title}</p>" + table(["file", "size", "sha256", "blake3", "git oid", ""], rows, numeric=(1,),
                                                   cls="files"))
    parts.append("<h2>Lineage</h2>")
    parts.append(table(["relation", "parent", "commit", "pinned", "parent state"],
                       [[esc(l.relation), f'<a href="{esc(model_href(l.repo, l.commit))}">{esc(l.repo)}</a>',
                         short(l.commit), "yes" if l.pinned else "no", state(l.model_state) if l.model_state else "—"]
                        for l in detail.lineage]) if detail.lineage else "<p class=mut>none</p>")
    parts.append("<h2>Smoke runs</h2>")
    parts.append(table(["when", "passed", "device", "dtype", "fingerprint", "wall ms", "outputs", "error"],
                       [[esc(r.created_at[:19]), "yes" if r.passed else "no", esc(r.device), esc(r.dtype),
                         short(r.fingerprint, 16), f"{r.wall_ms:.1f}",
                         f'<code>{esc(json.dumps(r.output_shapes, sort_keys=True))}</code>', esc(r.error or "")]
                        for r in detail.smoke_runs], numeric=(5,)) if detail.smoke_runs else "<p class=mut>none</p>")
    parts.append("<h2>Deployments</h2>")
    parts.append(table(["node", "revision", "state", "last verified", "path", "layout"],
                       [[esc(d.node), short(d.commit), state(d.state), when(d.verified_at, now),
                         path_cell(d.path, 90), esc(d.layout)] for d in deployments])
                 if deployments else "<p class=mut>not deployed</p>")
    parts.append(f'<h2>Events <a class="mut" href="{esc(href("/ui/events", {"name": s.name}))}">(all)</a></h2>')
    parts.append(_events_table(events, now))
    return page(s.name, "".join(parts), user=user, active="fleet")


def _events_table(events: Sequence[EventView], now: dt.datetime) -> str:
    if not events:
        return "<p class=mut>no events</p>"
    rows = []
    for e in events:
        text = json.dumps(e.details, sort_keys=True, separators=(", ", ": "), default=str)
        rows.append([str(e.id), when(e.at, now), state(e.action.split(".")[0]) + (
            f" <span class=mut>{esc(e.action)}</span>" if "." in e.action else ""),
            f'<a href="{esc(href("/ui/events", {"name": e.subject}))}">{esc(e.subject)}</a>', esc(e.actor),
            esc(e.host), f'<code>{esc(text[:240])}{"…" if len(text) > 240 else ""}</code>'])
    return table(["id", "when", "action", "subject", "actor", "host", "details"], rows, numeric=(0,), cls="events")


def events_page(*, events: Sequence[EventView], older: int | None, name: str | None, kind: str | None,
                since: str | None, per: int, user: str | None, now: dt.datetime) -> str:
    params = {"name": name, "kind": kind, "since": since, "per": per if per != 50 else None}
    form = (f'<form class="f" method="get" action="/ui/events"><label>subject <input name="name" value="{esc(name)}" '
            f'size="28"></label><label>kind {_select("kind", KNOWN_KINDS, kind, "any kind")}</label>'
            f'<label>since <input name="since" value="{esc(since)}" placeholder="7d or 2026-05-01" size="16"></label>'
            f'<label>per page <input name="per" value="{per}" size="4"></label><button>filter</button></form>')
    more = (f'<div class="pager"><a href="{esc(href("/ui/events", {**params, "before": older}))}">older ›</a></div>'
            if older is not None else "")
    return page("Events", "<h1>Event log</h1>" + form + _events_table(events, now) + more, user=user, active="events")

