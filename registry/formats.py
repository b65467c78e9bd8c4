"""Format checks on files before a model is recorded as verified.

- safetensors: the header parses and every tensor fits the file (catches truncation);
- ``model.safetensors.index.json`` names exactly the shards present (a missing shard fails here,
  not after minutes of loading);
- ``pytorch_model.bin`` beside a safetensors index is an error (accelerate prefers the .bin and
  leaves the rest on ``meta``);
- pickle files (``.bin``, ``.pt``, ``.pth``, ``.pkl``, ``.ckpt``) are flagged: they are only ever
  loaded with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from registry.errors import FormatError, IncompleteModel

MAX_HEADER = 100 * 1024 * 1024
DTYPE_BITS = {
    "BOOL": 8, "U8": 8, "I8": 8, "F8_E4M3": 8, "F8_E5M2": 8, "F8_E8M0": 8, "U16": 16, "I16": 16, "F16": 16,
    "BF16": 16, "U32": 32, "I32": 32, "F32": 32, "U64": 64, "I64": 64, "F64": 64, "C64": 64,
    "F4": 4, "F6_E2M3": 6, "F6_E3M2": 6,
}
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt")
INDEX_NAME = "model.safetensors.index.json"


@dataclass(frozen=True)
class FormatReport:
    pickles: tuple[str, ...]
    safetensors_checked: int


def check_safetensors(path: Path, display: str) -> int:
    """Validate one safetensors file; returns the number of tensors."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise FormatError(f"{display}: not a safetensors file: {size} bytes, shorter than its 8-byte header length")
        (n,) = struct.unpack("<Q", head)
        if n > MAX_HEADER or 8 + n > size:
            raise FormatError(f"{display}: truncated or not safetensors: header length {n} but file has {size} bytes")
        raw = f.read(n)
    try:
        header = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise FormatError(f"{display}: safetensors header is not valid JSON: {exc}") from exc
    if not isinstance(header, dict):
        raise FormatError(f"{display}: safetensors header is not a JSON object")
    data_len = size - 8 - n
    end_max = 0
    count = 0
    for name, info in header.items():
        if name == "__metadata__":
            continue
        try:
            begin, end = (int(x) for x in info["data_offsets"])
            bits = DTYPE_BITS.get(str(info["dtype"]))  # a dtype newer than this table: offsets checked only
            elems = 1
            for d in info["shape"]:
                elems *= int(d)
        except (KeyError, TypeError, ValueError) as exc:
            raise FormatError(f"{display}: tensor {name!r} has a malformed header entry: {exc!r}") from exc
        if not (0 <= begin <= end) or (bits is not None and end - begin != (elems * bits + 7) // 8):
            raise FormatError(f"{display}: tensor {name!r}: offsets {begin}..{end} do not match its dtype and shape")
        if end > data_len:
            raise FormatError(
                f"{display}: truncated: tensor {name!r} ends at byte {end} of the data section, "
                f"which has only {data_len} bytes"
            )
        end_max = max(end_max, end)
        count += 1
    if end_max != data_len:
        raise FormatError(f"{display}: {data_len - end_max} trailing bytes after the last tensor (corrupt or appended)")
    return count


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
    for folder, names in sorted(_by_dir(files).items()):
        if INDEX_NAME not in names:
            continue
        index_rel = folder + INDEX_NAME
        try:
            weight_map = json.loads(files[index_rel].read_text()).get("weight_map")
        except (OSError, UnicodeDecodeError, json.JSONDecodeError, AttributeError) as exc:
            raise FormatError(f"{prefix}{index_rel}: not a valid index: {exc}") from exc
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
