"""Real Hub repo layouts (file lists with the sizes the Hub shows, the real small JSON files), each cited
in its own ``<org>__<name>.json``; see README.md here. ``load_all()`` reads them for the corpus test and
bench/rules.py."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from registry.manifest.jsonread import expected_type

HERE = Path(__file__).parent
UNITS = {"Bytes": 1, "B": 1, "kB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12}
SIZE_RE = re.compile(r"^([0-9][0-9,.]*)\s*(Bytes|B|kB|MB|GB|TB)$")


def size_bytes(shown: str | int | None) -> int | None:
    """The Hub's tree pages round sizes ("74 MB", "728 Bytes"): the bytes they stand for."""
    if shown is None or isinstance(shown, int):
        return shown
    m = SIZE_RE.match(shown.strip())
    if m is None:
        raise ValueError(f"unreadable size {shown!r}")
    return int(float(m.group(1).replace(",", "")) * UNITS[m.group(2)])


@dataclass(frozen=True)
class Layout:
    repo: str
    data: dict[str, Any]

    @property
    def paths(self) -> list[str]:
        return [f["path"] for f in self.data["files"]]

    @property
    def sizes(self) -> dict[str, int | None]:
        return {f["path"]: size_bytes(f.get("size")) for f in self.data["files"]}

    def read_json(self, path: str) -> Any:
        """The file's real content; for a file whose content is not public (``json_unknown``), an empty
        object (or list): the rules then see none of its keys, and the layout says so."""
        known = self.data.get("json", {})
        if path in known:
            return known[path]
        if path in self.data.get("json_unknown", {}):
            return [] if expected_type(path) is list else {}
        return None

    @property
    def family_group(self) -> str:
        return self.data["group"]


def load_all() -> dict[str, Layout]:
    out = {}
    for path in sorted(HERE.glob("*.json")):
        data = json.loads(path.read_text(encoding="utf-8"))
        out[data.get("id", data["repo"])] = Layout(data["repo"], data)
    return out
