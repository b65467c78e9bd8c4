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
