"""Format checks on files before a model is recorded as verified.

- safetensors: the header is what safetensors' own reader accepts (integer offsets, known dtypes, extents
  that tile the data section exactly: no overlap, no gap, nothing past the end; see the rules below);
- the JSON files loaders parse (config.json, tokenizer_config.json, ...: LOADER_JSON) are read with the
  strict reader of ``registry.manifest.jsonread``: a list, a string, 100 000 levels, NaN or non-UTF-8 is
  exit 5 naming the file, not a traceback at load time;
- ``model.safetensors.index.json`` names exactly the shards present (a missing shard fails here,
  not after minutes of loading);
- ``pytorch_model.bin`` beside a safetensors index is an error (accelerate prefers the .bin and
  leaves the rest on ``meta``);
- pickle files (``.bin``, ``.pt``, ``.pth``, ``.pkl``, ``.ckpt``) are flagged: they are only ever
  loaded with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from registry.errors import FormatError, IncompleteModel
from registry.manifest.jsonread import expected_type, parse_json

# safetensors' own reader (huggingface/safetensors, safetensors/src/tensor.rs: `read_metadata` and
# `Metadata::validate`, and the Dtype enum of the installed 0.8 release) is the rule here: a file it refuses
# must not be recorded `verified`. It checks, and so do we:
#   - the header length N is at most 100 000 000 and 8 + N fits in the file; the header is UTF-8 JSON;
#   - the header is an object; `__metadata__`, if present and not null, maps strings to strings;
#   - every other entry is an object with a known `dtype`, a `shape` of non-negative integers and
#     `data_offsets` of exactly two non-negative integers (serde's usize: no floats, no booleans, < 2**64);
#   - sorted by offsets, the extents tile the data section: the first begins at 0, each begins where the
#     previous ended, end >= begin, end - begin == product(shape) x dtype bits / 8 (in whole bytes; no
#     u64 overflow), and the last ends at the end of the file.
# Unknown keys inside a tensor entry are ignored (serde does not deny them). Only the header is read,
# never tensor data: this runs over every weight file at add, pull and verify.
MAX_HEADER = 100_000_000
HEADER_DEPTH = 128      # serde_json's recursion limit; a real header nests 3 levels
USIZE_MAX = 2 ** 64 - 1
DTYPE_BITS = {
    "BOOL": 8, "U8": 8, "I8": 8, "F8_E4M3": 8, "F8_E5M2": 8, "F8_E8M0": 8, "F8_E4M3FNUZ": 8, "F8_E5M2FNUZ": 8,
    "U16": 16, "I16": 16, "F16": 16, "BF16": 16, "U32": 32, "I32": 32, "F32": 32, "U64": 64, "I64": 64,
    "F64": 64, "C64": 64, "F4": 4, "F6_E2M3": 6, "F6_E3M2": 6,
}
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt")
INDEX_NAME = "model.safetensors.index.json"
ST_ADVICE = "the file is damaged or was not written by a safetensors writer; re-download or re-export it"
# JSON files that loaders parse (transformers, tokenizers, sentence-transformers, peft): each is checked with
# the strict reader, so one that no loader can read is refused at add instead of failing at load time. Other
# JSON (trainer_state.json, eval results) is not read by loaders and may hold NaN: left alone.
LOADER_JSON = frozenset({
    "config.json", "adapter_config.json", "modules.json", "tokenizer_config.json", "special_tokens_map.json",
    "generation_config.json", "added_tokens.json", "preprocessor_config.json", "processor_config.json",
    "config_sentence_transformers.json", "sentence_bert_config.json", "tokenizer.json", INDEX_NAME,
})
MAX_LOADER_JSON = 64 * 1024 * 1024


@dataclass(frozen=True)
class FormatReport:
    pickles: tuple[str, ...]
    safetensors_checked: int


def _is_usize(value: object) -> bool:
    return type(value) is int and 0 <= value <= USIZE_MAX  # type() excludes bool, as serde does


def _tensor_entry(display: str, name: str, info: object) -> tuple[int, int, int]:
    """(begin, end, bytes its dtype and shape need) of one header entry, or a FormatError naming it."""
    def bad(problem: str) -> FormatError:
        return FormatError(f"{display}: tensor {name!r}: {problem}; {ST_ADVICE}",
                           details={"file": display, "tensor": name})

    if not isinstance(info, dict):
        raise bad(f"the header entry is {type(info).__name__}, not an object")
    for key in ("dtype", "shape", "data_offsets"):
        if key not in info:
            raise bad(f"the header entry has no {key!r}")
    dtype, shape, offsets = info["dtype"], info["shape"], info["data_offsets"]
    bits = DTYPE_BITS.get(dtype) if isinstance(dtype, str) else None
    if bits is None:
        raise bad(f"unknown dtype {dtype!r} (safetensors knows {', '.join(sorted(DTYPE_BITS))})")
    if not isinstance(shape, list) or not all(_is_usize(d) for d in shape):
        raise bad(f"shape {_short(shape)} is not a list of non-negative integers")
    if not (isinstance(offsets, list) and len(offsets) == 2 and all(_is_usize(o) for o in offsets)):
        raise bad(f"data_offsets {_short(offsets)} is not a pair of non-negative integers")
    elements = 1
    for d in shape:
        elements *= d
        if elements > USIZE_MAX:
            raise bad(f"shape {_short(shape)} has more elements than a 64-bit size holds")
    if elements * bits > USIZE_MAX:
        raise bad(f"shape {_short(shape)} x {dtype} is more bytes than a 64-bit size holds")
    if elements * bits % 8:
        raise bad(f"{elements} x {bits}-bit {dtype} does not end on a byte boundary")
    return offsets[0], offsets[1], elements * bits // 8


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def check_safetensors(path: Path, display: str) -> int:
    """Validate one safetensors file's header against its size, as safetensors' reader does; returns the
    number of tensors. Reads 8 bytes and the header, never the tensor data."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise FormatError(f"{display}: not a safetensors file: {size} bytes, shorter than its 8-byte header "
                              f"length; {ST_ADVICE}", details={"file": display})
        (n,) = struct.unpack("<Q", head)
        if n > MAX_HEADER:
            raise FormatError(f"{display}: header length {n} is over safetensors' limit of {MAX_HEADER} bytes; "
                              f"{ST_ADVICE}", details={"file": display})
        if 8 + n > size:
            raise FormatError(f"{display}: truncated or not safetensors: header length {n} but the file has "
                              f"{size} bytes; {ST_ADVICE}", details={"file": display})
        raw = f.read(n)
    header = parse_json(raw, display, expect=None, max_depth=HEADER_DEPTH, error=FormatError, advice=ST_ADVICE,
                        bom=False)
    if not isinstance(header, dict):
        raise FormatError(f"{display}: the safetensors header is {type(header).__name__}, not a JSON object; "
                          f"{ST_ADVICE}", details={"file": display})
    meta = header.get("__metadata__")
    if meta is not None and not (isinstance(meta, dict) and all(isinstance(v, str) for v in meta.values())):
        raise FormatError(f"{display}: __metadata__ must map strings to strings, got {_short(meta)}; {ST_ADVICE}",
                          details={"file": display, "key": "__metadata__"})
    extents = sorted((*_tensor_entry(display, name, info), name)
                     for name, info in header.items() if name != "__metadata__")
    data_len = size - 8 - n
    position = 0
    for begin, end, need, name in extents:
        where = f"{display}: tensor {name!r} (data_offsets {begin}..{end})"
        if begin != position:
            what = (f"overlaps the tensor before it, which ends at byte {position}" if begin < position
                    else f"leaves a gap of {begin - position} bytes after byte {position}")
            raise FormatError(f"{where} {what}; {ST_ADVICE}", details={"file": display, "tensor": name})
        if end < begin:
            raise FormatError(f"{where} ends before it begins; {ST_ADVICE}", details={"file": display, "tensor": name})
        if end - begin != need:
            raise FormatError(f"{where} spans {end - begin} bytes, but its dtype and shape need {need}; {ST_ADVICE}",
                              details={"file": display, "tensor": name})
        if end > data_len:
            raise FormatError(f"{display}: truncated: tensor {name!r} ends at byte {end} of the data section, "
                              f"which has only {data_len} bytes; {ST_ADVICE}", details={"file": display, "tensor": name})
        position = end
    if position != data_len:
        raise FormatError(f"{display}: {data_len - position} trailing bytes after the last tensor (corrupt or "
                          f"appended); {ST_ADVICE}", details={"file": display})
    return len(extents)


def check_loader_json(path: Path, display: str) -> None:
    """A JSON file a loader parses (LOADER_JSON): strict, and of the top-level type loaders expect."""
    size = path.stat().st_size
    if size > MAX_LOADER_JSON:
        raise FormatError(f"{display}: {size} bytes is too large for a JSON file loaders read whole "
                          f"(at most {MAX_LOADER_JSON})", details={"file": display})
    parse_json(path.read_bytes(), display, expect=expected_type(display), error=FormatError,
               advice="loaders cannot read it; fix or remove the file")


def _by_dir(paths: Iterable[str]) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for rel in paths:
        parent = str(PurePosixPath(rel).parent)
        out.setdefault("" if parent == "." else parent + "/", set()).add(PurePosixPath(rel).name)
    return out


def check_bin_beside_index(paths: Iterable[str], *, label: str = "") -> None:
    """``pytorch_model.bin`` in the same folder as a safetensors index: refuse (the meta-tensor failure)."""
    prefix = f"{label}/" if label else ""
    for folder, names in sorted(_by_dir(paths).items()):
        if INDEX_NAME in names and "pytorch_model.bin" in names:
            raise FormatError(
                f"{prefix}{folder}pytorch_model.bin sits beside {folder}{INDEX_NAME}: loaders prefer the .bin and "
                "leave the safetensors weights on 'meta' (Cannot copy out of meta tensor); remove one of the two "
                "formats",
                details={"path": f"{folder}pytorch_model.bin"},
            )


def check_files(files: Mapping[str, Path], *, label: str = "") -> FormatReport:
    """Check one component set of files, keyed by repo-relative path (values are readable paths).

    Only the selected files: a file the manifest does not select is not part of the model (never
    stored, served or deployed beside it), so no loader can find it there.
    """
    prefix = f"{label}/" if label else ""
    check_bin_beside_index(files, label=label)
    checked = 0
    for rel, path in sorted(files.items()):
        if rel.endswith(".safetensors"):
            check_safetensors(path, prefix + rel)
            checked += 1
        elif PurePosixPath(rel).name in LOADER_JSON:
            check_loader_json(path, prefix + rel)
    for folder, names in sorted(_by_dir(files).items()):
        if INDEX_NAME not in names:
            continue
        index_rel = folder + INDEX_NAME
        index = parse_json(files[index_rel].read_bytes(), prefix + index_rel, error=FormatError,
                           advice="loaders cannot read it; fix or remove the file")
        weight_map = index.get("weight_map")
        if not isinstance(weight_map, dict):
            raise FormatError(f"{prefix}{index_rel}: has no weight_map")
        named = {str(v) for v in weight_map.values()}
        present = {n for n in names if n.endswith(".safetensors")}
        missing = sorted(named - present)
        if missing:
            raise IncompleteModel(
                f"{prefix}{index_rel} names shards that are not present: {', '.join(missing)}",
                missing=[f"weights: {folder}{m}" for m in missing],
            )
        extra = sorted(present - named)
        if extra:
            raise FormatError(f"{prefix}{index_rel} does not name these shards beside it: {', '.join(extra)}")
    pickles = tuple(sorted(rel for rel in files if rel.endswith(PICKLE_SUFFIXES)))
    return FormatReport(pickles=pickles, safetensors_checked=checked)
