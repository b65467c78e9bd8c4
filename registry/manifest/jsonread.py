"""Reading a repo's small JSON files (config.json, adapter_config.json, modules.json, index files) as
untrusted input.

``json.loads`` alone accepts what no config needs and fails badly on the rest: ``Infinity`` and ``NaN``
(not JSON), 100 000 nested brackets (RecursionError, a traceback), integers of thousands of digits
(CPython's int limit raises a ValueError mid-parse, or the number is kept and costs quadratic time
later), and lone surrogate escapes (``"\\ud800"``, which no UTF-8 encoder and no Rust JSON reader accepts).
Here each of those is a ``ManifestError`` (exit 2) that names the file and, where there is one, the key path
(``config.json: text_config.vocab_size: ...``), before anything is recorded. The one strict reader for every
JSON a model holds: ``registry.formats`` parses safetensors headers and index files with it too (passing
``error=FormatError``, exit 5), and ``parse_toml`` is its TOML twin for manifests.
"""

from __future__ import annotations

import json
import re
import tomllib
from typing import Any

from registry.errors import ManifestError, RegistryError

MAX_DEPTH = 64          # real configs nest 4-6 levels (text_config.rope_scaling...); 64 is generous
MAX_INT_DIGITS = 40     # a 128-bit integer has 39 digits; no config count or id needs more
TOKEN_RE = re.compile(r'"(?:[^"\\]|\\.)*"|[\[\]{}:,]')
SURROGATE_RE = re.compile(r"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")  # a \uD800-\uDFFF escape: maybe a lone half
ADVICE = "fix or remove the file, or pass --manifest FILE"


class _Rejected:
    """A value the parser met but must not keep (a non-finite number, a huge integer)."""

    def __init__(self, what: str) -> None:
        self.what = what


def _fail(file: str, key: str | None, problem: str, error: type[RegistryError] = ManifestError,
          advice: str = ADVICE) -> RegistryError:
    where = f"{file}: {key}: " if key else f"{file}: "
    return error(f"{where}{problem}; {advice}", details={"file": file, "key": key})


def _key_path(parts: list[str]) -> str | None:
    if len(parts) > 6:  # a path 64 levels long says less than its start and its length
        return ".".join(parts[:4]) + f"... ({len(parts)} levels)"
    return ".".join(parts) if parts else None


STRING_RE = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"')  # unrolled: no alternation per character
NOT_BRACKET = str.maketrans("", "", "".join(chr(c) for c in range(128) if chr(c) not in "[]{}"))
PAIR_RE = re.compile(r"\[\]|\{\}")


def _shallow(text: str, max_depth: int) -> bool:
    """True when the brackets outside strings surely nest at most ``max_depth`` deep: strip the strings,
    keep the brackets, and peel innermost pairs ``max_depth`` times (each round runs in C). False means
    "maybe deeper or unbalanced": the exact token scan then decides and names the key path."""
    brackets = STRING_RE.sub("", text).translate(NOT_BRACKET)
    brackets = "".join(c for c in brackets if c in "[]{}") if not brackets.isascii() else brackets
    for _ in range(max_depth):
        if not brackets:
            return True
        peeled = PAIR_RE.sub("", brackets)
        if peeled == brackets:
            return False  # unbalanced
        brackets = peeled
    return not brackets


def _check_depth(text: str, file: str, max_depth: int = MAX_DEPTH, error: type[RegistryError] = ManifestError,
                 advice: str = ADVICE) -> None:
    """Bracket depth without recursion, and the key path where it goes past ``max_depth``."""
    if text.count("[") + text.count("{") <= max_depth:
        return  # cannot be deeper than the number of brackets (the common case: no scan)
    if _shallow(text, max_depth):
        return  # the fast bound held (a large tokenizer.json: 0.5 MB in milliseconds, not seconds)
    keys: list[str] = []
    last_string: str | None = None
    for match in TOKEN_RE.finditer(text):
        token = match.group()
        if token[0] == '"':
            last_string = token
            continue
        if token in "[{":
            if len(keys) >= max_depth:
                raise _fail(file, _key_path([k for k in keys if k]), f"nested more than {max_depth} levels deep "
                            f"(at byte {match.start()}); no model file nests like that", error, advice)
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


def _lone_surrogate(text: str) -> _Rejected | None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        return _Rejected(f"a lone UTF-16 surrogate escape (\\u{ord(text[exc.start]):04x}), which is not text")
    return None


def _find_rejected(value: Any, path: list[str], strings: bool = False) -> tuple[list[str], _Rejected] | None:
    """The first value the parser marked as rejected (and, with ``strings``, a key or string that is not text)."""
    todo: list[tuple[Any, list[str]]] = [(value, path)]
    while todo:
        item, where = todo.pop()
        if isinstance(item, _Rejected):
            return where, item
        if strings and isinstance(item, str) and (bad := _lone_surrogate(item)) is not None:
            return where, bad
        if isinstance(item, dict):
            for k in item:
                if strings and (bad := _lone_surrogate(k)) is not None:
                    return [*where, k.encode("utf-8", "replace").decode()], bad
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


def parse_json(data: bytes, file: str, *, expect: type | None = dict, max_depth: int = MAX_DEPTH,
               error: type[RegistryError] = ManifestError, advice: str = ADVICE, bom: bool = True) -> Any:
    """Parse ``data`` (the bytes of ``file``) strictly; ``expect`` is the type the top level must have.

    Every refusal is ``error`` (a ManifestError, exit 2, unless the caller checks a file format) naming
    ``file`` and the key path, ending in ``advice``; nothing else escapes (no RecursionError, ValueError or
    UnicodeDecodeError). ``bom=False`` refuses a leading byte-order mark (safetensors' reader does)."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _fail(file, None, f"not UTF-8 text (byte {exc.start}: {data[exc.start:exc.start + 1]!r}); "
                    "JSON files must be UTF-8", error, advice) from None
    if bom and text.startswith("\ufeff"):
        text = text[1:]  # a byte-order mark: harmless, and some Windows editors write it
    _check_depth(text, file, max_depth, error, advice)
    rejected: list[_Rejected] = []

    def keep(value: Any) -> Any:
        if isinstance(value, _Rejected):
            rejected.append(value)
        return value

    try:
        value = json.loads(text, parse_int=lambda t: keep(_parse_int(t)),
                           parse_constant=lambda t: keep(_parse_constant(t)),
                           parse_float=lambda t: keep(_parse_float(t)))
    except json.JSONDecodeError as exc:
        raise _fail(file, None, f"not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}",
                    error, advice) from None
    except (RecursionError, ValueError) as exc:  # a depth or number the checks above did not foresee
        raise _fail(file, None, f"not usable JSON: {exc}", error, advice) from None
    surrogates = SURROGATE_RE.search(text) is not None
    found = _find_rejected(value, [], strings=surrogates) if rejected or surrogates else None
    if found is not None:
        where, rejected = found
        raise _fail(file, _key_path(where) or "(top level)", f"holds {rejected.what}", error, advice)
    if expect is not None and not isinstance(value, expect):
        wanted = {dict: "an object {...}", list: "a list [...]"}.get(expect, expect.__name__)
        raise _fail(file, None, f"the top level is {_kind(value)}, not {wanted}", error, advice)
    return value


def _kind(value: Any) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean", type(None): "null"}.get(
        type(value), "a number")


# Files whose top level is a list; every other JSON file inference reads is an object.
LIST_FILES = ("modules.json",)


def expected_type(path: str) -> type:
    return list if path.rsplit("/", 1)[-1] in LIST_FILES else dict


# ---- TOML (manifests): tomllib recurses once per nested array or inline table --------------------------------

TOML_TOKEN_RE = re.compile(r'"""(?:[^\\]|\\.)*?"""|\'\'\'.*?\'\'\'|"(?:[^"\\\n]|\\.)*"|\'[^\'\n]*\'|#[^\n]*|[\[\]{}]',
                           re.DOTALL)


TOML_FLOAT_RE = re.compile(r"\d[\d_]*\.\d")  # the one dot of a float or a time's fraction: digits both sides


def _toml_dotted_keys(text: str, file: str) -> None:
    """A dotted key (``a.b.c``, or a ``[a.b.c]`` header) of more than MAX_DEPTH parts: tomllib's time grows with
    the square of its length (50 000 parts: minutes), and the table it makes nests that deep."""
    if text.count(".") <= MAX_DEPTH:
        return
    bare = TOML_TOKEN_RE.sub(lambda m: m.group() if m.group() in "[]{}" else "\n", text)  # strings, comments out
    bare = TOML_FLOAT_RE.sub(" ", bare)
    for number, line in enumerate(bare.split("\n"), 1):
        if line.count(".") > MAX_DEPTH:
            raise _fail(file, None, f"a dotted key of more than {MAX_DEPTH} parts (near line {number}); no manifest "
                        "nests like that", ManifestError, "fix the manifest")


def _toml_depth(text: str, file: str) -> None:
    """Bracket depth outside strings and comments, without recursion (tomllib itself would raise RecursionError
    at a few hundred levels, and 50 000 used to be a traceback)."""
    _toml_dotted_keys(text, file)
    if text.count("[") + text.count("{") <= MAX_DEPTH:
        return
    depth = 0
    for match in TOML_TOKEN_RE.finditer(text):
        token = match.group()
        if token in ("[", "{"):
            depth += 1
            if depth > MAX_DEPTH:
                line = text.count("\n", 0, match.start()) + 1
                raise _fail(file, None, f"nested more than {MAX_DEPTH} levels deep (line {line}); no manifest "
                            "nests like that", ManifestError, "fix the manifest")
        elif token in ("]", "}"):
            depth = max(depth - 1, 0)


def _toml_check_values(value: Any, file: str) -> None:
    """Nesting (dotted keys nest without brackets) and integer sizes, without recursion."""
    todo: list[tuple[Any, int]] = [(value, 0)]
    while todo:
        item, depth = todo.pop()
        if depth > MAX_DEPTH:
            raise _fail(file, None, f"nested more than {MAX_DEPTH} levels deep (dotted keys or tables); no "
                        "manifest nests like that", ManifestError, "fix the manifest")
        if isinstance(item, int) and not isinstance(item, bool) and abs(item) >= 10 ** MAX_INT_DIGITS:
            raise _fail(file, None, f"holds an integer of more than {MAX_INT_DIGITS} digits", ManifestError,
                        "fix the manifest")
        if isinstance(item, dict):
            todo.extend((v, depth + 1) for v in item.values())
        elif isinstance(item, list):
            todo.extend((v, depth + 1) for v in item)


def parse_toml(text: str, file: str) -> dict[str, Any]:
    """Parse a manifest's TOML strictly: a ``ManifestError`` (exit 2) naming ``file`` for bad TOML, nesting past
    MAX_DEPTH (brackets, or dotted keys ``a.b.c...`` that nest without brackets) and integers of more than
    MAX_INT_DIGITS digits; never a RecursionError or ValueError."""
    _toml_depth(text, file)
    try:
        data = tomllib.loads(text, parse_float=_toml_float)
    except tomllib.TOMLDecodeError as exc:
        raise ManifestError(f"{file}: not valid TOML: {exc}", details={"file": file, "key": None}) from None
    except (RecursionError, ValueError) as exc:  # a depth or number the scan above did not foresee
        raise ManifestError(f"{file}: not usable TOML: {exc}", details={"file": file, "key": None}) from None
    _toml_check_values(data, file)
    return data


def _toml_float(text: str) -> float:
    """tomllib hands every float literal here, ``inf`` and ``nan`` included: no manifest value needs those."""
    if len(text) > 400:
        raise ValueError(f"a number literal of {len(text)} characters")
    value = float(text)
    if value != value or value in (float("inf"), float("-inf")):
        raise ValueError(f"{text} is not a finite number")
    return value
