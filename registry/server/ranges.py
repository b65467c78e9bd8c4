"""HTTP ``Range: bytes=...`` for one range (what huggingface_hub sends: resume and header peeks).

Numbers are compared as digit strings before any ``int()``: a position longer than any file size can be (a
5 000-digit number would exceed Python's int() digit limit and raise) means "past the end", which RFC 9110
§14.1.2 defines: a first position past the end is unsatisfiable (416), a last position past the end is clamped,
a suffix longer than the file is the whole file.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_ONE = re.compile(r"^\s*bytes\s*=\s*([0-9]*)\s*-\s*([0-9]*)\s*$", re.ASCII)
_MAX_DIGITS = 19  # every file size fits in 19 digits (below 2**63); longer numbers are "past the end"


@dataclass(frozen=True)
class ByteRange:
    start: int
    length: int
    unsatisfiable: bool = False


def _number(digits: str, size: int) -> int:
    """The position, or ``size + 1`` (past the end) when it has more digits than any size."""
    digits = digits.lstrip("0") or "0"
    return int(digits) if len(digits) <= _MAX_DIGITS else max(size, 0) + 1


def _less(a: str, b: str) -> bool:
    """Whether the decimal number ``a`` is smaller than ``b``, for digit strings of any length."""
    a, b = a.lstrip("0") or "0", b.lstrip("0") or "0"
    return (len(a), a) < (len(b), b)


def parse_range(header: str, size: int) -> ByteRange | None:
    """None: serve the whole file (no usable range, or several ranges, which RFC 9110 lets us ignore)."""
    m = _ONE.match(header)
    if m is None:
        return None
    first, last = m.group(1), m.group(2)
    if not first and not last:
        return None
    if not first:  # suffix: the last N bytes
        n = _number(last, size)
        if n == 0 or size == 0:
            return ByteRange(0, 0, unsatisfiable=True)
        n = min(n, size)
        return ByteRange(size - n, n)
    if last and _less(last, first):
        return None  # syntactically invalid: ignore it
    start = _number(first, size)
    if start >= size:
        return ByteRange(min(start, size), 0, unsatisfiable=True)
    end = min(_number(last, size) if last else size - 1, size - 1)
    return ByteRange(start, end - start + 1)
