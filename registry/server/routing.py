"""The Hub's URL shapes, parsed from the raw (still percent-encoded) path.

Routing on ``raw_path`` matters: clients quote revisions and tree paths with ``safe=""``, so
``refs/pr/1`` arrives as ``refs%2Fpr%2F1`` and must stay one segment until it has been located.
The repo id is one or two segments; it is found by the marker that follows it.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import unquote

API_MARKERS = ("revision", "tree", "refs", "paths-info", "xet-read-token")


@dataclass(frozen=True)
class Route:
    kind: str            # info | tree | refs | paths-info | resolve | harnesses | unknown
    repo_id: str = ""
    revision: str | None = None
    path: str = ""


def _split_repo(segs: list[str], markers: tuple[str, ...]) -> tuple[str, list[str]] | None:
    """``[ns, name, marker, ...]`` or ``[name, marker, ...]`` -> (repo id, [marker, ...])."""
    if len(segs) >= 3 and segs[2] in markers:
        return f"{unquote(segs[0])}/{unquote(segs[1])}", segs[2:]
    if len(segs) >= 2 and segs[1] in markers:
        return unquote(segs[0]), segs[1:]
    return None


def parse(raw_path: bytes) -> Route:
    text = raw_path.decode("latin-1").split("?", 1)[0]
    if text == "/api/agent-harnesses":
        return Route("harnesses")
    if text.startswith("/api/"):
        segs = text[len("/api/"):].split("/")
        if segs[0] != "models":
            return Route("unknown", repo_id=unquote("/".join(segs[1:3])))  # datasets/spaces: not mirrored
        segs = segs[1:]
        if not segs or not segs[-1]:
            segs = segs[:-1] if segs else segs
        if len(segs) in (1, 2) and all(segs):
            return Route("info", repo_id="/".join(unquote(s) for s in segs))
        found = _split_repo(segs, API_MARKERS)
        if found is None:
            return Route("unknown")
        repo_id, rest = found
        marker, args = rest[0], rest[1:]
        if marker == "revision" and len(args) == 1:
            return Route("info", repo_id, unquote(args[0]))
        if marker == "refs" and not args:
            return Route("refs", repo_id)
        if marker == "tree" and args:
            return Route("tree", repo_id, unquote(args[0]), unquote("/".join(args[1:])))
        if marker == "paths-info" and len(args) == 1:
            return Route("paths-info", repo_id, unquote(args[0]))
        return Route("unknown", repo_id)
    segs = text.lstrip("/").split("/")
    if segs and segs[0] in ("datasets", "spaces", "kernels"):
        return Route("unknown", repo_id=unquote("/".join(segs[1:3])))
    found = _split_repo(segs, ("resolve",))
    if found is None:
        return Route("unknown")
    repo_id, rest = found
    if len(rest) < 3:
        return Route("unknown", repo_id)
    return Route("resolve", repo_id, unquote(rest[1]), unquote("/".join(rest[2:])))
