"""Issue 12: inputs that crashed `registry add` (exit 1 / exit 70 with a traceback or an InternalError) and
safetensors files that no loader accepts but `add` recorded `verified`.

Each case goes through the real CLI (in-process) against a real catalog: it must exit 2 (bad input) or 5
(format), with a message that names the offending file, nothing recorded in the catalog and no blob left in
the store."""

from __future__ import annotations

import json
import os
import struct
from collections.abc import Callable
from pathlib import Path

from tests.add_helpers import catalog_counts, store_files
from tests.conftest import make_bert_like, write_json, write_safetensors


def _st(path: Path, header: bytes | dict, data: bytes = b"") -> None:
    raw = header if isinstance(header, bytes) else json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + data)


def _tensor(dtype: str, shape: list, begin, end) -> dict:
    return {"dtype": dtype, "shape": shape, "data_offsets": [begin, end]}


def _weights(header: bytes | dict, data: bytes = b"") -> Callable[[Path], object]:
    return lambda folder: _st(folder / "model.safetensors", header, data)


def _file(name: str, data: bytes) -> Callable[[Path], object]:
    def make(folder: Path) -> None:
        if name == "adapter_config.json":  # an adapter folder: the gate reads adapter_config.json
            write_safetensors(folder / "adapter_model.safetensors", {"lora_A.weight": ("F32", [2, 8])})
        (folder / name).write_bytes(data)
    return make


def _symlink_loop(folder: Path) -> None:
    os.symlink("loop-b", folder / "loop-a")
    os.symlink("loop-a", folder / "loop-b")


def _self_link(folder: Path) -> None:
    os.symlink("self.json", folder / "self.json")


def _module_folder_name(folder: Path) -> None:
    write_json(folder / "modules.json", [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}])
    write_json(folder / "1_Pooling" / "config.json", {"word_embedding_dimension": 8})
    (folder / "1_Pooling" / os.fsdecode(b"extra-\xff\xfe.json")).write_bytes(b"{}")


def _top_folder_name(folder: Path) -> None:
    (folder / os.fsdecode(b"notes-\xe9.txt")).write_bytes(b"latin-1 name")


def _toml(text: str) -> Callable[[Path], list[str]]:
    def make(folder: Path) -> list[str]:
        path = folder.parent / f"{folder.name}.toml"
        path.write_text(text)
        return ["--manifest", str(path)]
    return make


F4 = b"\0" * 4
DEEP_ST = b"[" * 200_000 + b"]" * 200_000
DEEP_JSON = b"[" * 100_000 + b"]" * 100_000
MANIFEST_HEAD = 'schema = 1\nname = "acme/x"\nfamily = "transformers"\n'
# case -> (make the folder bad, exit code, words the message must hold, the file it must name)
CASES: dict[str, tuple[Callable[[Path], object], int, str, str]] = {
    "symlink loop": (_symlink_loop, 2, "symlink loop", "loop-"),
    "symlink to itself": (_self_link, 2, "symlink loop", "self.json"),
    "non-UTF-8 file name in a module folder": (_module_folder_name, 2, "not UTF-8", "1_Pooling/extra-"),
    "non-UTF-8 file name at the top": (_top_folder_name, 2, "not UTF-8", "notes-"),
    "safetensors header nested 200 000 deep": (_weights(DEEP_ST), 5, "nested more than", "model.safetensors"),
    "safetensors header object nested 200 000 deep": (
        _weights(b'{"a":' * 200_000 + b"1" + b"}" * 200_000), 5, "nested more than", "model.safetensors"),
    "Infinity as a data offset": (_weights(b'{"w":{"dtype":"F32","shape":[1],"data_offsets":[0,Infinity]}}', F4),
                                  5, "Infinity", "model.safetensors"),
    "NaN as a dim": (_weights(b'{"w":{"dtype":"F32","shape":[NaN],"data_offsets":[0,4]}}', F4), 5, "NaN",
                     "model.safetensors"),
    "-Infinity as a dim": (_weights(b'{"w":{"dtype":"F32","shape":[-Infinity],"data_offsets":[0,4]}}', F4), 5,
                           "-Infinity", "model.safetensors"),
    "5 000-digit dim": (_weights(b'{"w":{"dtype":"F32","shape":[' + b"9" * 5000 + b'],"data_offsets":[0,4]}}', F4),
                        5, "5000 digits", "model.safetensors"),
    "5 000-digit data offset": (
        _weights(b'{"w":{"dtype":"F32","shape":[1],"data_offsets":[0,' + b"4" * 5000 + b']}}', F4), 5,
        "5000 digits", "model.safetensors"),
    "1e400 as a data offset": (_weights(b'{"w":{"dtype":"F32","shape":[1],"data_offsets":[0,1e400]}}', F4), 5,
                               "infinity", "model.safetensors"),
    "header length beyond the file": (lambda f: (f / "model.safetensors").write_bytes(
        struct.pack("<Q", 4096) + b"{}"), 5, "truncated or not safetensors", "model.safetensors"),
    "header length over 100 MB": (lambda f: (f / "model.safetensors").write_bytes(
        struct.pack("<Q", 2**63) + b"{}"), 5, "over safetensors' limit", "model.safetensors"),
    "safetensors header not UTF-8": (_weights(b'{"\xff":1}'), 5, "not UTF-8", "model.safetensors"),
    # safetensors that no loader accepts (they used to be recorded `verified`)
    "tensors overlapping exactly": (_weights({"a": _tensor("F32", [1], 0, 4), "b": _tensor("F32", [1], 0, 4)}, F4),
                                    5, "overlaps", "model.safetensors"),
    "tensors overlapping partly": (
        _weights({"a": _tensor("F32", [2], 0, 8), "b": _tensor("F32", [2], 4, 12)}, bytes(12)), 5, "overlaps",
        "model.safetensors"),
    "a gap between tensors": (_weights({"a": _tensor("F32", [1], 0, 4), "b": _tensor("F32", [1], 8, 12)},
                                       bytes(12)), 5, "gap of 4 bytes", "model.safetensors"),
    "first tensor not at 0": (_weights({"a": _tensor("F32", [1], 4, 8)}, bytes(8)), 5, "gap of 4 bytes",
                              "model.safetensors"),
    "data section not fully covered": (_weights({"a": _tensor("F32", [1], 0, 4)}, bytes(12)), 5,
                                       "8 trailing bytes", "model.safetensors"),
    "negative dims": (_weights({"a": _tensor("F32", [-1, -1], 0, 4)}, F4), 5, "non-negative",
                      "model.safetensors"),
    "float offsets": (_weights({"a": _tensor("F32", [1], 0.0, 4.0)}, F4), 5, "non-negative integers",
                      "model.safetensors"),
    "boolean offsets": (_weights({"a": _tensor("U8", [1], False, True)}, b"\0"), 5, "non-negative integers",
                        "model.safetensors"),
    "float dims": (_weights({"a": _tensor("F32", [1.0], 0, 4)}, F4), 5, "non-negative", "model.safetensors"),
    "offsets beyond the file": (_weights({"a": _tensor("F32", [4], 0, 16)}, F4), 5, "truncated",
                                "model.safetensors"),
    "extent smaller than dims x dtype": (_weights({"a": _tensor("F32", [2], 0, 4)}, F4), 5, "need 8",
                                         "model.safetensors"),
    "extent larger than dims x dtype": (_weights({"a": _tensor("F16", [1], 0, 4)}, F4), 5, "need 2",
                                        "model.safetensors"),
    "end before begin": (_weights({"a": _tensor("F32", [1], 0, 4), "b": _tensor("U8", [0], 4, 0)}, F4), 5,
                         "ends before it begins", "model.safetensors"),
    "unknown dtype": (_weights({"a": _tensor("F31", [1], 0, 4)}, F4), 5, "unknown dtype", "model.safetensors"),
    "dims overflowing 64 bits": (_weights({"a": _tensor("F32", [2**32, 2**32], 0, 4)}, F4), 5, "64-bit",
                                 "model.safetensors"),
    "header a list": (_weights(b"[1, 2]"), 5, "not a JSON object", "model.safetensors"),
    "header a string": (_weights(b'"weights"'), 5, "not a JSON object", "model.safetensors"),
    "__metadata__ not str->str": (_weights({"__metadata__": {"format": 1}, "a": _tensor("F32", [1], 0, 4)}, F4),
                                  5, "__metadata__", "model.safetensors"),
    "__metadata__ a list": (_weights({"__metadata__": ["pt"], "a": _tensor("F32", [1], 0, 4)}, F4), 5,
                            "__metadata__", "model.safetensors"),
    "tensor entry a number": (_weights({"a": 7}), 5, "not an object", "model.safetensors"),
    "three data offsets": (_weights({"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4, 4]}}, F4), 5,
                           "pair", "model.safetensors"),
    # a TOML manifest that tomllib recursed on
    "TOML manifest arrays nested 50 000 deep": (_toml(MANIFEST_HEAD + "x = " + "[" * 50_000 + "]" * 50_000),
                                                2, "nested more than", ".toml"),
    "TOML manifest inline tables nested 50 000 deep": (
        _toml(MANIFEST_HEAD + "x = " + "{a=" * 50_000 + "1" + "}" * 50_000), 2, "nested more than", ".toml"),
    "TOML manifest dotted key 50 000 deep": (_toml(MANIFEST_HEAD + ".".join(["k"] * 50_000) + " = 1\n"),
                                             2, "dotted key of more than 64", ".toml"),
    "TOML manifest 5 000-digit integer": (_toml(MANIFEST_HEAD + "x = " + "7" * 5000 + "\n"), 2, "digits",
                                          ".toml"),
    "TOML manifest inf": (_toml(MANIFEST_HEAD + "[smoke.image]\nwidth = inf\n"), 2, "not a finite number",
                          ".toml"),
}
# JSON files that are lists, strings, 100 000 deep or not UTF-8: the gate's files exit 2 (ManifestError), the
# files only loaders read exit 5 (FormatError)
for _name, _code in [("config.json", 2), ("adapter_config.json", 2), ("modules.json", 2),
                     ("tokenizer_config.json", 5), ("special_tokens_map.json", 5), ("generation_config.json", 5),
                     ("tokenizer.json", 5), ("added_tokens.json", 5)]:
    for _what, _data, _words in [("a list", b"[1, 2]", "the top level is a list"),
                                 ("a string", b'"bert"', "the top level is a string"),
                                 ("nested 100 000 deep", DEEP_JSON, "nested more than 64"),
                                 ("not UTF-8", b'{"model_type": "bert\xff"}', "not UTF-8"),
                                 ("Infinity", b'{"factor": Infinity}', "Infinity"),
                                 ("a lone surrogate", b'{"\\ud800": 1}', "surrogate")]:
        if _name == "modules.json" and _what == "a list":
            continue  # modules.json is a list
        CASES[f"{_name} {_what}"] = (_file(_name, _data), _code, _words, _name)


def test_add_refuses_each_crash_case(cli, reg, tmp_path, trials):
    t = trials("crash: add")
    for i, (case, (make, code, words, names)) in enumerate(sorted(CASES.items())):
        folder = make_bert_like(tmp_path / f"m{i}")
        made = make(folder)
        extra = made if isinstance(made, list) else []
        before, blobs = catalog_counts(reg), store_files(reg)
        r = cli("add", folder, "--name", f"acme/crash-{i}", "--json", *extra)
        problems = []
        if r.exit_code != code:
            problems.append(f"exit {r.exit_code}, not {code}")
        try:
            error = json.loads(r.stdout)
            message = error["message"]
        except (ValueError, KeyError, TypeError):
            error, message = {}, ""
            problems.append("no JSON error on stdout")
        if words not in message:
            problems.append(f"message lacks {words!r}")
        if names not in message:
            problems.append(f"message does not name {names!r}")
        if "Traceback" in r.stderr or error.get("kind") == "bug":
            problems.append("a traceback / internal error")
        if catalog_counts(reg) != before:
            problems.append("catalog rows recorded")
        if store_files(reg) != blobs:
            problems.append("store changed")
        t.record(f"{case}: {'; '.join(problems)}: {message[:200]}", not problems)
    assert t.escaped == []
