"""HTTP ``Range: bytes=...`` for one range (what huggingface_hub sends: resume and header peeks)."""

from __future__ import annotations

import re
from dataclasses import dataclass

_ONE = re.compile(r"^\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*$")


@dataclass(frozen=True)
class ByteRange:
    start: int
    length: int
    unsatisfiable: bool = False


def parse_range(header: str, size: int) -> ByteRange | None:
    """None: serve the whole file (no usable range, or several ranges, which RFC 9110 lets us ignore)."""
    m = _ONE.match(header)
    if m is None:
        return None
    first, last = m.group(1), m.group(2)
    if not first and not last:
        return None
    if not first:  # suffix: the last N bytes
        n = int(last)
        if n == 0 or size == 0:
            return ByteRange(0, 0, unsatisfiable=True)
        n = min(n, size)
        return ByteRange(size - n, n)
    start = int(first)
    if last and int(last) < start:
        return None  # syntactically invalid: ignore it
    if start >= size:
        return ByteRange(start, 0, unsatisfiable=True)
    end = int(last) if last else size - 1
    end = min(end, size - 1)
    return ByteRange(start, end - start + 1)
