"""Format checks: safetensors headers fit their files, an index names exactly the shards present, no
.bin beside an index, pickles flagged."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest

from registry.errors import FormatError, IncompleteModel
from registry.formats import check_files, check_safetensors
from tests.conftest import make_bert_like, write_json, write_safetensors


def _raw(path: Path, header: object, data: bytes = b"") -> Path:
    raw = json.dumps(header).encode() if not isinstance(header, bytes) else header
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + data)
    return path


def test_a_valid_file(tmp_path):
    p = write_safetensors(tmp_path / "m.safetensors", {"a": ("F32", [2, 3]), "b": ("BF16", [4])})
    assert check_safetensors(p, "m.safetensors") == 2


@pytest.mark.parametrize("make, words", [
    (lambda p: p.write_bytes(b"\x01\x02"), "shorter than its 8-byte header length"),
    (lambda p: p.write_bytes(struct.pack("<Q", 10**12) + b"{}"), "over safetensors' limit"),
    (lambda p: p.write_bytes(struct.pack("<Q", 10**6) + b"{}"), "truncated or not safetensors"),
    (lambda p: _raw(p, b"{not json"), "not valid JSON"),
    (lambda p: _raw(p, [1, 2]), "header is list, not a JSON object"),
    (lambda p: _raw(p, {"a": {"dtype": "F32", "shape": [2]}}, bytes(8)), "has no 'data_offsets'"),
    (lambda p: _raw(p, {"a": {"dtype": "F32", "shape": [None], "data_offsets": [0, 8]}}, bytes(8)), "not a list of non-negative"),
    (lambda p: _raw(p, {"a": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}}, bytes(8)),
     "spans 8 bytes, but its dtype and shape need 12"),
    (lambda p: _raw(p, {"a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}, bytes(8)), "truncated: tensor 'a'"),
    (lambda p: _raw(p, {"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}, bytes(12)), "4 trailing bytes"),
])
def test_broken_safetensors(tmp_path, make, words):
    p = tmp_path / "m.safetensors"
    make(p)
    with pytest.raises(FormatError, match=words) as info:
        check_files({"sub/m.safetensors": p}, label="acme/x")
    assert "acme/x/sub/m.safetensors" in info.value.message and info.value.exit_code == 5


def test_sub_byte_and_unknown_dtypes(tmp_path):
    # as safetensors 0.8 reads them: F4 x 4 fills 2 bytes; F4 x 3 ends mid-byte; a dtype it does not know is refused
    p = _raw(tmp_path / "a.safetensors", {"a": {"dtype": "F4", "shape": [4], "data_offsets": [0, 2]},
                                          "b": {"dtype": "F6_E2M3", "shape": [4], "data_offsets": [2, 5]}}, bytes(5))
    assert check_safetensors(p, "a.safetensors") == 2
    p = _raw(tmp_path / "b.safetensors", {"a": {"dtype": "F4", "shape": [3], "data_offsets": [0, 2]}}, bytes(2))
    with pytest.raises(FormatError, match="byte boundary"):
        check_safetensors(p, "b.safetensors")
    p = _raw(tmp_path / "c.safetensors", {"b": {"dtype": "Q9", "shape": [5], "data_offsets": [0, 5]}}, bytes(5))
    with pytest.raises(FormatError, match="unknown dtype 'Q9'"):
        check_safetensors(p, "c.safetensors")


def test_a_truncated_real_file(tmp_path):
    p = write_safetensors(tmp_path / "m.safetensors", {"a": ("F32", [64, 64])})
    p.write_bytes(p.read_bytes()[:-1])
    with pytest.raises(FormatError, match="truncated"):
        check_safetensors(p, "m.safetensors")


def _sharded(tmp_path: Path) -> dict[str, Path]:
    folder = make_bert_like(tmp_path / "m", shards=2)
    return {p.name: p for p in folder.iterdir()}


def test_an_index_with_its_shards(tmp_path):
    files = _sharded(tmp_path)
    report = check_files(files)
    assert report.safetensors_checked == 2 and report.pickles == ()


def test_an_index_naming_a_missing_shard(tmp_path):
    files = _sharded(tmp_path)
    del files["model-00002-of-00002.safetensors"]
    with pytest.raises(IncompleteModel) as info:
        check_files(files)
    assert info.value.missing == ["weights: model-00002-of-00002.safetensors"] and info.value.exit_code == 4


def test_a_shard_the_index_does_not_name(tmp_path):
    files = _sharded(tmp_path)
    files["model-00003-of-00003.safetensors"] = write_safetensors(tmp_path / "x.safetensors", {"x": ("F32", [1])})
    with pytest.raises(FormatError, match="does not name these shards beside it: model-00003-of-00003"):
        check_files(files)


@pytest.mark.parametrize("content, words", [("{", "not valid JSON"), ('{"metadata": {}}', "has no weight_map")])
def test_a_broken_index(tmp_path, content, words):
    files = _sharded(tmp_path)
    files["model.safetensors.index.json"].write_text(content)
    with pytest.raises(FormatError, match=words):
        check_files(files)


def test_bin_beside_an_index(tmp_path):
    # (a .bin the manifest does not select is not part of the model: see tests/test_ingest_paths.py)
    files = _sharded(tmp_path)
    binary = tmp_path / "pytorch_model.bin"
    binary.write_bytes(b"\x80\x02")
    with pytest.raises(FormatError, match="pytorch_model.bin sits beside model.safetensors.index.json") as err:
        check_files({**files, "pytorch_model.bin": binary})
    assert "Cannot copy out of meta tensor" in err.value.message
    # in another folder it is not beside the index
    check_files({**files, "other/pytorch_model.bin": binary})


def test_an_index_in_a_subfolder(tmp_path):
    sub = make_bert_like(tmp_path / "m", shards=2)
    files = {f"text/{p.name}": p for p in sub.iterdir()}
    del files["text/model-00001-of-00002.safetensors"]
    with pytest.raises(IncompleteModel) as info:
        check_files(files, label="acme/x")
    assert info.value.missing == ["weights: text/model-00001-of-00002.safetensors"]


def test_pickles_are_flagged(tmp_path):
    paths = {}
    for name in ("colbert_linear.pt", "Visualized_m3.pth", "pytorch_model.bin", "x.pkl", "config.json"):
        paths[name] = tmp_path / name
        paths[name].write_bytes(b"x")
    write_json(paths["config.json"], {})
    report = check_files(paths)
    assert report.pickles == ("Visualized_m3.pth", "colbert_linear.pt", "pytorch_model.bin", "x.pkl")
