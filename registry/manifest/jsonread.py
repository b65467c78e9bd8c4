"""Reading a repo's small JSON files (config.json, adapter_config.json, modules.json, index files) as
untrusted input.

``json.loads`` alone accepts what no config needs and fails badly on the rest: ``Infinity`` and ``NaN``
(not JSON), 100 000 nested brackets (RecursionError, a traceback), integers of thousands of digits
(CPython's int limit raises a ValueError mid-parse, or the number is kept and costs quadratic time
later). Here each of those is a ``ManifestError`` (exit 2) that names the file and, where there is
one, the key path (``config.json: text_config.vocab_size: ...``), before anything is recorded.
"""

from __future__ import annotations

import json
import re
from typing import Any

from registry.errors import ManifestError

MAX_DEPTH = 64          # real configs nest 4-6 levels (text_config.rope_scaling...); 64 is generous
MAX_INT_DIGITS = 40     # a 128-bit integer has 39 digits; no config count or id needs more
TOKEN_RE = re.compile(r'"(?:[^"\\]|\\.)*"|[\[\]{}:,]')


class _Rejected:
    """A value the parser met but must not keep (a non-finite number, a huge integer)."""

    def __init__(self, what: str) -> None:
        self.what = what


def _fail(file: str, key: str | None, problem: str) -> ManifestError:
    where = f"{file}: {key}: " if key else f"{file}: "
    return ManifestError(f"{where}{problem}; fix or remove the file, or pass --manifest FILE",
                         details={"file": file, "key": key})


def _key_path(parts: list[str]) -> str | None:
    if len(parts) > 6:  # a path 64 levels long says less than its start and its length
        return ".".join(parts[:4]) + f"... ({len(parts)} levels)"
    return ".".join(parts) if parts else None


def _check_depth(text: str, file: str) -> None:
    """Bracket depth without recursion, and the key path where it goes past MAX_DEPTH."""
    if text.count("[") + text.count("{") <= MAX_DEPTH:
        return  # cannot be deeper than the number of brackets (the common case: no scan)
    keys: list[str] = []
    last_string: str | None = None
    for match in TOKEN_RE.finditer(text):
        token = match.group()
        if token[0] == '"':
            last_string = token
            continue
        if token in "[{":
            if len(keys) >= MAX_DEPTH:
                raise _fail(file, _key_path([k for k in keys if k]), f"nested more than {MAX_DEPTH} levels deep "
                            f"(at byte {match.start()}); no model config nests like that")
            keys.append("")
        elif token in "]}":
            if keys:
                keys.pop()
        elif token == ":" and last_string is not None and keys:
            try:
                keys[-1] = str(json.loads(last_string))
            except ValueError:
                keys[-1] = last_string.strip('"')
        last_string = None


def _find_rejected(value: Any, path: list[str]) -> tuple[list[str], _Rejected] | None:
    todo: list[tuple[Any, list[str]]] = [(value, path)]
    while todo:
        item, where = todo.pop()
        if isinstance(item, _Rejected):
            return where, item
        if isinstance(item, dict):
            todo.extend((v, [*where, str(k)]) for k, v in item.items())
        elif isinstance(item, list):
            todo.extend((v, [*where, f"[{i}]"]) for i, v in enumerate(item))
    return None


def _parse_int(text: str) -> int | _Rejected:
    digits = len(text.lstrip("-"))
    if digits > MAX_INT_DIGITS:
        return _Rejected(f"an integer of {digits} digits (more than {MAX_INT_DIGITS})")
    return int(text)


def _parse_constant(name: str) -> _Rejected:
    return _Rejected(f"{name}, which is not a JSON number")


def _parse_float(text: str) -> float | _Rejected:
    if len(text) > 400:  # beyond any float's precision; keeps float() off pathological literals
        return _Rejected(f"a number literal of {len(text)} characters")
    value = float(text)
    if value in (float("inf"), float("-inf")):
        return _Rejected(f"{text}, which overflows to infinity")
    return value


def parse_json(data: bytes, file: str, *, expect: type | None = dict) -> Any:
    """Parse ``data`` (the bytes of ``file``) strictly; ``expect`` is the type the top level must have."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _fail(file, None, f"not UTF-8 text (byte {exc.start}: {data[exc.start:exc.start + 1]!r}); "
                    "JSON files must be UTF-8") from None
    if text.startswith("\ufeff"):
        text = text[1:]  # a byte-order mark: harmless, and some Windows editors write it
    _check_depth(text, file)
    try:
        value = json.loads(text, parse_int=_parse_int, parse_constant=_parse_constant, parse_float=_parse_float)
    except json.JSONDecodeError as exc:
        raise _fail(file, None, f"not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    except (RecursionError, ValueError) as exc:  # a depth or number the checks above did not foresee
        raise _fail(file, None, f"not usable JSON: {exc}") from None
    found = _find_rejected(value, [])
    if found is not None:
        where, rejected = found
        raise _fail(file, _key_path(where) or "(top level)", f"holds {rejected.what}")
    if expect is not None and not isinstance(value, expect):
        wanted = {dict: "an object {...}", list: "a list [...]"}.get(expect, expect.__name__)
        raise _fail(file, None, f"the top level is {_kind(value)}, not {wanted}")
    return value


def _kind(value: Any) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean", type(None): "null"}.get(
        type(value), "a number")


# Files whose top level is a list; every other JSON file inference reads is an object.
LIST_FILES = ("modules.json",)


def expected_type(path: str) -> type:
    return list if path.rsplit("/", 1)[-1] in LIST_FILES else dict
