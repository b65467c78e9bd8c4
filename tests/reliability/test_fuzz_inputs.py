"""Fuzzing every parser `add` runs over a model folder (issue 12), with hypothesis: safetensors headers, the
JSON files models carry, TOML manifests and manifest tables, and folder/file names. Every input gets a clear
registry error (a RegistryError subclass with its exit code) or a valid result, never another exception.

The differential test runs the real safetensors library (its Rust reader) over every generated file: what it
refuses we refuse, and what it loads we accept."""

from __future__ import annotations

import json
import os
import struct
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from registry.errors import RegistryError
from registry.formats import DTYPE_BITS, check_files, check_safetensors
from registry.manifest.jsonread import expected_type, parse_json, parse_toml
from registry.manifest.schema import Manifest, parse_manifest
from registry.services.folders import Folder, scan_folder
from tests.reliability.tally import budget

N = budget(200, 2000)
FUZZ = settings(max_examples=N, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture,
                                       HealthCheck.filter_too_much, HealthCheck.data_too_large])


def _outcome(call, ok_types: tuple[type, ...], codes: tuple[int, ...]) -> tuple[bool, str]:
    """(caught, what happened): a valid result of ``ok_types``, or a RegistryError with one of ``codes``."""
    try:
        result = call()
    except RegistryError as exc:
        return exc.exit_code in codes and bool(exc.message), f"{type(exc).__name__} exit {exc.exit_code}"
    except Exception as exc:  # noqa: BLE001 - the escape we count
        return False, f"escaped {type(exc).__name__}: {str(exc)[:200]}"
    return isinstance(result, ok_types), f"valid {type(result).__name__}"


# ---- safetensors headers -------------------------------------------------------------------------------------

DTYPES = sorted(DTYPE_BITS)
numbers = st.one_of(st.integers(min_value=-3, max_value=80), st.integers(min_value=2**63, max_value=2**65),
                    st.sampled_from([0.0, 4.0, 1.5, -0.0, True, False, None, "4", 10**41]))
dims = st.one_of(st.integers(min_value=0, max_value=6), numbers)


@st.composite
def tiled(draw) -> tuple[dict, int]:
    """A header that tiles its data section (the valid shape), then maybe one mutation of it."""
    count = draw(st.integers(min_value=0, max_value=5))
    header: dict[str, Any] = {}
    offset = 0
    for i in range(count):
        dtype = draw(st.sampled_from(DTYPES))
        shape = draw(st.lists(st.integers(min_value=0, max_value=4), max_size=3))
        elems = 1
        for d in shape:
            elems *= d
        if elems * DTYPE_BITS[dtype] % 8:
            shape = [*shape, 8]
            elems *= 8
        size = elems * DTYPE_BITS[dtype] // 8
        header[f"t{i}"] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + size]}
        offset += size
    if draw(st.booleans()):
        header["__metadata__"] = draw(st.one_of(
            st.dictionaries(st.text(max_size=4), st.text(max_size=4), max_size=2), st.none(),
            st.dictionaries(st.text(max_size=4), st.one_of(st.integers(), st.none(), st.lists(st.integers())),
                            min_size=1, max_size=2),
            st.lists(st.text(max_size=3), max_size=2), st.text(max_size=3)))
    data_len = offset
    names = [k for k in header if k != "__metadata__"]
    mutation = draw(st.sampled_from(["none", "none", "offset", "dim", "dtype", "data", "drop-key", "entry",
                                     "extra-key", "add-tensor"]))
    if mutation == "offset" and names:
        t = header[draw(st.sampled_from(names))]
        t["data_offsets"][draw(st.integers(0, 1))] = draw(numbers)
    elif mutation == "dim" and names:
        t = header[draw(st.sampled_from(names))]
        t["shape"] = [*t["shape"], draw(dims)]
    elif mutation == "dtype" and names:
        header[draw(st.sampled_from(names))]["dtype"] = draw(st.one_of(
            st.sampled_from(DTYPES), st.sampled_from(["f32", "Q9", "", "F8", 7, None])))
    elif mutation == "data":
        data_len = max(0, data_len + draw(st.integers(min_value=-9, max_value=9)))
    elif mutation == "drop-key" and names:
        del header[draw(st.sampled_from(names))][draw(st.sampled_from(["dtype", "shape", "data_offsets"]))]
    elif mutation == "entry" and names:
        header[draw(st.sampled_from(names))] = draw(st.one_of(st.integers(), st.text(max_size=3), st.none(),
                                                             st.lists(st.integers(), max_size=3)))
    elif mutation == "extra-key" and names:
        header[draw(st.sampled_from(names))]["extra"] = draw(st.one_of(st.integers(), st.lists(st.integers())))
    elif mutation == "add-tensor":  # an overlapping, gapped or trailing extra tensor
        begin = draw(st.integers(min_value=0, max_value=offset + 8))
        n = draw(st.integers(min_value=0, max_value=3))
        header["extra"] = {"dtype": "U8", "shape": [n], "data_offsets": [begin, begin + n]}
        data_len = max(data_len, draw(st.sampled_from([data_len, begin + n])))
    return header, data_len


raw_headers = st.one_of(
    st.binary(max_size=60),
    st.sampled_from([b"[" * 300 + b"]" * 300, b'{"a":' * 300 + b"1" + b"}" * 300, b"{}", b"  {}  ", b"\xef\xbb\xbf{}",
                     b'{"__metadata__": null}', b'{"a": {"dtype": "U8", "shape": [1], "data_offsets": [0, Infinity]}}',
                     b'{"a": {"dtype": "U8", "shape": [NaN], "data_offsets": [0, 1]}}',
                     b'{"a": {"dtype": "U8", "shape": [-0], "data_offsets": [-0, 0]}}',
                     b'{"\\ud800": {"dtype": "U8", "shape": [0], "data_offsets": [0, 0]}}',
                     b'{"a": {"dtype": "U8", "shape": [1], "data_offsets": [0, 1e0]}}']),
    st.lists(st.sampled_from([b"{", b"}", b"[", b"]", b'"a"', b":", b",", b"1", b"-1", b"1.5", b"null",
                              b'"dtype"', b'"shape"', b'"data_offsets"', b'"U8"', b'"__metadata__"']),
             max_size=30).map(b"".join),
)


@st.composite
def safetensors_files(draw) -> bytes:
    if draw(st.integers(0, 4)) == 0:
        raw, data_len = draw(raw_headers), draw(st.integers(min_value=0, max_value=8))
    else:
        header, data_len = draw(tiled())
        raw = json.dumps(header).encode()
        raw += b" " * draw(st.integers(0, 7))
    length = len(raw)
    if draw(st.integers(0, 9)) == 0:  # a header length that lies
        length = draw(st.sampled_from([0, length + 1, length + 1000, 2**63, 100_000_001, max(length - 1, 0)]))
    return struct.pack("<Q", length) + raw + bytes(data_len)


def _library(data: bytes) -> tuple[bool, str]:
    import safetensors

    try:
        safetensors.deserialize(data)
    except Exception as exc:  # noqa: BLE001 - SafetensorError, or a panic surfacing as another exception
        return False, str(exc)[:120]
    return True, "loads"


@FUZZ
@given(data=safetensors_files())
def test_fuzz_safetensors_headers(trials, data):
    t = _tally(trials, "fuzz: safetensors")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "m.safetensors"
        path.write_bytes(data)
        caught, what = _outcome(lambda: check_safetensors(path, "m.safetensors"), (int,), (5,))
    t.record(f"{data[:160]!r}: {what}", caught)


@FUZZ
@given(data=safetensors_files())
def test_fuzz_safetensors_agrees_with_the_library(trials, data):
    """What safetensors refuses we refuse; what it loads we accept."""
    t = _tally(trials, "fuzz: safetensors vs library")
    lib_ok, lib_says = _library(data)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "m.safetensors"
        path.write_bytes(data)
        try:
            check_safetensors(path, "m.safetensors")
            ours_ok, ours_says = True, "accepted"
        except RegistryError as exc:
            ours_ok, ours_says = False, exc.message[:160]
        except Exception as exc:  # noqa: BLE001
            ours_ok, ours_says = None, f"escaped {type(exc).__name__}"
    t.record(f"{data[:160]!r}: library {lib_says}; ours {ours_says}", ours_ok is lib_ok)


# ---- the JSON files models carry ---------------------------------------------------------------------------

JSON_FILES = ["config.json", "adapter_config.json", "modules.json", "tokenizer_config.json",
              "model.safetensors.index.json", "1_Pooling/config.json", "generation_config.json"]
json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True, allow_infinity=True),
              st.text(max_size=6)),
    lambda children: st.one_of(st.lists(children, max_size=4), st.dictionaries(st.text(max_size=5), children,
                                                                                 max_size=4)),
    max_leaves=20)
json_bytes = st.one_of(
    json_values.map(lambda v: json.dumps(v).encode()),  # json.dumps writes NaN / Infinity for floats
    st.binary(max_size=80),
    st.integers(min_value=1, max_value=3000).map(lambda n: b"[" * n + b"]" * n),
    st.integers(min_value=1, max_value=3000).map(lambda n: b'{"a":' * n + b"0" + b"}" * n),
    st.integers(min_value=1, max_value=6000).map(lambda n: b'{"n": ' + b"9" * n + b"}"),
    st.sampled_from([b'{"a": 1e400}', b'{"a": -Infinity}', b'{"\\udfff": 1}', b'"\\ud83d"', b"\xef\xbb\xbf{}",
                     b'{"a": 1' + b"0" * 500 + b".5}"]),
    st.lists(st.sampled_from([b"{", b"}", b"[", b"]", b'"k"', b":", b",", b"1", b"NaN", b"null", b'"\\u'])
             , max_size=40).map(b"".join),
)


@FUZZ
@given(name=st.sampled_from(JSON_FILES), data=json_bytes)
def test_fuzz_model_json(trials, name, data):
    """The gate's reader (exit 2) and the format check of loader JSON (exit 5, through check_files)."""
    t = _tally(trials, "fuzz: json")
    caught, what = _outcome(lambda: parse_json(data, name, expect=expected_type(name)), (dict, list), (2,))
    if caught and what.startswith("valid"):  # a value of the top-level type its loaders expect
        value = parse_json(data, name, expect=expected_type(name))
        caught = isinstance(value, expected_type(name)) and _finite(value)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "f.json"
        path.write_bytes(data)
        caught2, what2 = _outcome(lambda: check_files({name: path}), (object,), (4, 5))
    t.record(f"{name} {data[:160]!r}: {what}; format check {what2}", caught and caught2)


def _finite(value: Any) -> bool:
    todo = [value]
    while todo:
        item = todo.pop()
        if isinstance(item, float) and (item != item or item in (float("inf"), float("-inf"))):
            return False
        if isinstance(item, dict):
            todo.extend(item.values())
        elif isinstance(item, list):
            todo.extend(item)
    return True


# ---- TOML manifests and manifest tables ------------------------------------------------------------------

toml_fragments = st.sampled_from([
    'schema = 1\n', 'schema = "1"\n', 'name = "acme/x"\n', 'name = "../x"\n', 'family = "transformers"\n',
    'family = "nope"\n', '[[component]]\n', 'role = "weights"\n', 'role = "bogus"\n', 'files = ["model.safetensors"]\n',
    'files = [{path = "a", size = -1}]\n', 'files = [{path = "../../etc/passwd"}]\n', 'patterns = ["*.json"]\n',
    'patterns = [1]\n', 'revision = "main"\n', 'revision = "../x"\n', '[smoke]\n', 'texts = ["hi"]\n', 'texts = []\n',
    '[smoke.image]\n', 'width = 9999999\n', 'width = inf\n', 'height = nan\n', 'seed = 1' + '0' * 60 + '\n',
    'expected_missing_keys = ["(("]\n', 'expected_missing_keys = ["' + "(" * 200 + ")" * 200 + '"]\n',
    'x = ' + '[' * 70 + ']' * 70 + '\n', 'y = ' + '{a=' * 70 + '1' + '}' * 70 + '\n', '.'.join(['z'] * 80) + ' = 1\n',
    'w = """[[[[{{{"""\n', "v = '''" + "[" * 100 + "'''\n", '# [[[[[[\n', 'a = 1\na = 2\n', '[bad\n', '= 3\n',
    'base_only = "yes"\n', 'description = 5\n', 'component = 3\n', 'smoke = 1\n', 'n = ' + '9' * 5000 + '\n',
    'f = 1' + '0' * 500 + '.0\n', 'q = "\\ud800"\n', '\x00\n', 'required = false\n',
])
toml_texts = st.one_of(st.lists(toml_fragments, max_size=14).map("".join), st.text(max_size=80))


def _load_toml(text: str) -> Manifest:
    return parse_manifest(parse_toml(text, "m.toml"), "m.toml")


@FUZZ
@given(text=toml_texts)
def test_fuzz_toml_manifests(trials, text):
    t = _tally(trials, "fuzz: manifest")
    caught, what = _outcome(lambda: _load_toml(text), (Manifest,), (2,))
    t.record(f"toml {text[:200]!r}: {what}", caught)


leaf = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=8),
                 st.sampled_from(["acme/x", "transformers", "weights", "model.safetensors", "(", "*", "main"]))
tables = st.recursive(leaf, lambda c: st.one_of(st.lists(c, max_size=3), st.dictionaries(
    st.sampled_from(["role", "repo", "files", "patterns", "path", "size", "sha256", "texts", "image", "width",
                     "expect", "x"]), c, max_size=4)), max_leaves=12)
component = st.fixed_dictionaries({}, optional={
    "role": st.one_of(st.sampled_from(["weights", "config", "tokenizer", "base", "adapter"]), tables),
    "repo": st.one_of(st.just("acme/x"), tables), "revision": st.one_of(st.just("main"), tables),
    "files": st.one_of(st.lists(st.one_of(st.text(max_size=12), tables), max_size=3), tables),
    "patterns": st.one_of(st.lists(st.text(max_size=5), max_size=3), tables),
    "exclude": tables, "required": tables, "note": tables, "bogus": tables})
manifest_dicts = st.fixed_dictionaries({}, optional={
    "schema": st.one_of(st.just(1), tables), "name": st.one_of(st.just("acme/x"), tables),
    "family": st.one_of(st.sampled_from(["transformers", "sentence-transformers", "peft"]), tables),
    "component": st.one_of(st.lists(st.one_of(component, tables), max_size=3), tables),
    "smoke": st.one_of(st.fixed_dictionaries({}, optional={"texts": tables, "image": tables, "expect": tables}),
                       tables),
    "expected_missing_keys": st.one_of(st.lists(st.text(max_size=6), max_size=2), tables),
    "base_only": tables, "description": tables, "extra": tables})


@FUZZ
@given(data=manifest_dicts)
def test_fuzz_manifest_tables(trials, data):
    t = _tally(trials, "fuzz: manifest")
    caught, what = _outcome(lambda: parse_manifest(data, "m.toml"), (Manifest,), (2,))
    t.record(f"table {data!r:.200}: {what}", caught)


# ---- folder and file names ---------------------------------------------------------------------------------

name_bytes = st.one_of(
    st.binary(min_size=1, max_size=12),
    st.text(min_size=1, max_size=12).map(lambda s: s.encode("utf-8", "surrogateescape")),
    st.sampled_from([b"..", b".", b"\xff\xfe", b"caf\xe9", b"a\\b", b"\x7f", b"\n", b" ", b"-", b".git",
                     b"__pycache__", b"\xed\xa0\x80"]),
).map(lambda b: b.replace(b"/", b"_").replace(b"\0", b"_")).filter(lambda b: b not in (b".", b".."))


@FUZZ
@given(entries=st.lists(st.tuples(st.lists(name_bytes, max_size=2), name_bytes), min_size=1, max_size=4))
def test_fuzz_folder_names(trials, entries):
    t = _tally(trials, "fuzz: folder names")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "m"
        root.mkdir()
        made = []
        for dirs, name in entries:
            folder = os.path.join(os.fsencode(root), *dirs) if dirs else os.fsencode(root)
            try:
                os.makedirs(folder, exist_ok=True)
                with open(os.path.join(folder, name), "wb") as fh:
                    fh.write(b"{}")
                made.append((dirs, name))
            except OSError:
                continue  # a name this filesystem refuses (too long, a file where a folder should be)
        caught, what = _outcome(lambda: _scan(root), (Folder,), (2,))
    t.record(f"{made!r:.200}: {what}", caught)


def _scan(root: Path) -> Folder:
    folder = scan_folder(root)
    for rel in folder.files:  # every recorded name is UTF-8 text a catalog column and a URL can carry
        rel.encode("utf-8")
    return folder


# ---- the tallies: one per kind for the whole hypothesis run of a test ----------------------------------------

_TALLIES: dict[tuple[int, str], Any] = {}


def _tally(trials, kind: str):
    """The tally of ``kind`` for this test run (hypothesis calls the test body once per example)."""
    key = (id(trials), kind)
    if key not in _TALLIES:
        _TALLIES[key] = trials(kind)
    return _TALLIES[key]


@pytest.fixture(autouse=True)
def _assert_no_escapes(trials):
    yield
    for (owner, _kind), tally in list(_TALLIES.items()):
        if owner == id(trials):
            del _TALLIES[(owner, _kind)]
            assert tally.escaped == [], f"{tally.kind}: {len(tally.escaped)} escaped, e.g. {tally.escaped[:5]}"
