"""Repo-relative path rules, shared by manifests, the store, pulls, bundles and deployments."""

from __future__ import annotations

from pathlib import Path, PurePosixPath


def check_relative_path(path: str) -> str:
    """Return ``path`` if it is a clean relative POSIX path inside its repo, else raise ValueError."""
    if not isinstance(path, str) or not path:
        raise ValueError("empty path")
    if "\\" in path:
        raise ValueError(f"{path!r}: backslash is not allowed in paths")
    try:
        path.encode("utf-8")
    except UnicodeEncodeError as exc:
        # a name that is not UTF-8 on disk (os.fsdecode keeps its bytes as surrogates): no Hub repo, catalog
        # column or HTTP path can carry it
        bad = path[exc.start].encode("utf-8", "surrogateescape") if 0xDC80 <= ord(path[exc.start]) <= 0xDCFF else b""
        raise ValueError(f"{path.encode('utf-8', 'replace').decode()!r}: the name is not UTF-8 text "
                         f"(byte {bad!r} at character {exc.start}); rename it") from None
    if any(ord(c) < 0x20 or c == "\x7f" for c in path):
        # NUL, tabs and newlines would also make the root digest's "path\tsize\tsha256\n" lines ambiguous
        raise ValueError(f"{path!r}: control characters are not allowed in paths")
    if path.startswith("/"):
        raise ValueError(f"{path!r}: absolute paths are not allowed")
    parts = path.split("/")
    if any(p in ("", ".", "..") for p in parts):
        raise ValueError(f"{path!r}: '..', '.' and empty segments are not allowed")
    return path


def safe_join(root: Path, rel: str) -> Path:
    """``root / rel`` after checking that ``rel`` cannot leave ``root``."""
    check_relative_path(rel)
    return Path(root).joinpath(*PurePosixPath(rel).parts)


MAX_REF = 255  # bytes; git and the Hub allow longer, but a label longer than a file name cannot be a cache file


def check_ref_name(name: object) -> str:
    """Return ``name`` if it is a usable ref (branch or tag) or revision name, else raise ValueError naming the
    rule it breaks. The rules are ``git check-ref-format --allow-onelevel``'s, plus git's branch rule (no leading
    ``-``) and a length cap: a ref name becomes a file under an HF cache's ``refs/`` and part of URLs, so
    ``../../x`` must never get that far. A 40-hex commit passes. The one check for add, pull, import and serve."""
    if not isinstance(name, str):
        raise ValueError(f"a ref name must be a string, not {type(name).__name__}")
    if not name:
        raise ValueError("empty ref name")
    if len(name.encode("utf-8", "surrogatepass")) > MAX_REF:
        raise ValueError(f"longer than {MAX_REF} bytes")
    bad = next((c for c in name if ord(c) < 0x20 or c == "\x7f"), None)
    if bad is not None:
        raise ValueError(f"control character {bad!r} is not allowed")
    bad = next((c for c in name if c in " ~^:?*[\\"), None)
    if bad is not None:
        raise ValueError(f"{bad!r} is not allowed (no space or any of ~ ^ : ? * [ \\)")
    if ".." in name:
        raise ValueError("'..' is not allowed")
    if "@{" in name:
        raise ValueError("'@{' is not allowed")
    if name == "@":
        raise ValueError("'@' alone is not a ref name")
    if name.startswith("/") or name.endswith("/"):
        raise ValueError("cannot begin or end with '/'")
    if name.startswith("-"):
        raise ValueError("cannot begin with '-'")
    if name.endswith("."):
        raise ValueError("cannot end with '.'")
    for part in name.split("/"):
        if not part:
            raise ValueError("empty component ('//')")
        if part.startswith("."):
            raise ValueError(f"component {part!r} begins with '.'")
        if part.endswith(".lock"):
            raise ValueError(f"component {part!r} ends with '.lock'")
    try:
        name.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError("not valid UTF-8 text") from exc
    return name


def ref_problem(name: object) -> str | None:
    """Why ``name`` is not a usable ref name, or None when it is."""
    try:
        check_ref_name(name)
    except ValueError as exc:
        return str(exc)
    return None


def require_ref(name: str, what: str = "--revision") -> str:
    """``check_ref_name`` for input a user gave: a bad name is a UsageError (exit 2) naming it and the rule."""
    from registry.errors import UsageError

    why = ref_problem(name)
    if why is not None:
        raise UsageError(f"{what} {name!r} is not a valid ref name: {why}; use a branch, tag or commit name "
                         "as git accepts it (like main, v1.0 or refs/pr/1); nothing was recorded",
                         details={"ref": name, "rule": why})
    return name
