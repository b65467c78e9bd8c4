"""Digests: known vectors, git's own answer for blob sha1, and one pass == separate hashes at the edges."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from pathlib import Path

import blake3
import pytest

from registry.hashing import (
    _PARALLEL_MIN, _PIPELINE_MIN, CHUNK, LFS_THRESHOLD, MultiHasher, blake3_file, git_blob_sha1, hash_bytes, hash_file,
    lfs_pointer, lfs_pointer_oid, root_digest, sha256_file,
)

needs_git = pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")


def git_hash_object(path: Path) -> str:
    return subprocess.run(["git", "hash-object", "--no-filters", str(path)], check=True, capture_output=True,
                          text=True).stdout.strip()


def test_known_vectors():
    d = hash_bytes(b"abc")
    assert d.size == 3
    assert d.sha256 == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    assert d.blake3 == "6437b3ac38465133ffb63b75273a8db548c558465d79db03fd359c6cd5bd9d85"
    assert d.git_sha1 == "f2ba8f84ab5c1bce84a7b441cb1959cfc7093b7f"  # echo -n abc | git hash-object --stdin
    empty = hash_bytes(b"")
    assert empty.sha256 == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    assert empty.blake3 == "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262"
    assert empty.git_sha1 == "e69de29bb2d1d6434b8b29ae775ad8c2e48c5391"  # git's empty blob


@needs_git
def test_git_blob_sha1_and_lfs_pointer_oid_match_git(tmp_path):
    data = b"hello\nworld\n\x00\xff"
    (tmp_path / "f").write_bytes(data)
    assert git_blob_sha1(data) == git_hash_object(tmp_path / "f")
    sha = hashlib.sha256(b"x" * 100).hexdigest()
    (tmp_path / "ptr").write_bytes(lfs_pointer(sha, 100))
    assert lfs_pointer_oid(sha, 100) == git_hash_object(tmp_path / "ptr")
    assert lfs_pointer(sha, 100).decode() == (
        f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha}\nsize 100\n")


SIZES = sorted({0, 1, _PARALLEL_MIN - 1, _PARALLEL_MIN, _PARALLEL_MIN + 1, CHUNK - 1, CHUNK, CHUNK + 1,
                _PIPELINE_MIN - 1, _PIPELINE_MIN, _PIPELINE_MIN + 1, LFS_THRESHOLD - 1, LFS_THRESHOLD,
                LFS_THRESHOLD + 1})


@needs_git
@pytest.mark.parametrize("size", SIZES)
def test_one_pass_equals_separate_hashes(tmp_path, size):
    path = tmp_path / "blob"
    block = hashlib.sha256(str(size).encode()).digest() * 32  # 1 KiB, varies with size
    path.write_bytes((block * (size // len(block) + 1))[:size])
    data = path.read_bytes()
    d = hash_file(path)
    assert d.size == size
    assert d.sha256 == hashlib.sha256(data).hexdigest() == sha256_file(path)
    assert d.blake3 == blake3.blake3(data).hexdigest() == blake3_file(path) == blake3_file(path, threads=1)
    if size < LFS_THRESHOLD:
        assert d.git_sha1 == git_hash_object(path)
    else:
        assert d.git_sha1 is None  # LFS files are named by sha256 on the Hub
    # odd chunk sizes (a network stream) give the same answer
    assert hash_file(path, chunk_size=65_537) == d


def test_git_sha1_dropped_when_the_announced_size_is_wrong():
    h = MultiHasher(5)
    h.update(b"abc")
    d = h.finish()
    assert d.git_sha1 is None and d.sha256 == hashlib.sha256(b"abc").hexdigest()
    with pytest.raises(ValueError, match="needs the size"):
        MultiHasher(None, git=True)


def test_root_digest_counts_names_not_order():
    a = [("a.bin", 1, "1" * 64), ("b.bin", 2, "2" * 64)]
    assert root_digest(a) == root_digest(list(reversed(a)))
    assert root_digest(a) != root_digest([("c.bin", 1, "1" * 64), ("b.bin", 2, "2" * 64)])  # renamed
    assert root_digest(a) != root_digest([("a.bin", 1, "2" * 64), ("b.bin", 2, "1" * 64)])  # swapped contents
    lines = "".join(f"{p}\t{s}\t{h}\n" for p, s, h in sorted(a))
    assert root_digest(a) == hashlib.sha256(lines.encode()).hexdigest()


def test_the_streaming_hasher_agrees_with_the_one_pass_file_hasher(tmp_path):
    """MultiHasher (downloads, chunk by chunk) and hash_file (local files, pipelined) give the same digests."""
    data = hashlib.sha256(b"x").digest() * (_PIPELINE_MIN // 16)
    (tmp_path / "f").write_bytes(data)
    h = MultiHasher(len(data))
    for i in range(0, len(data), 777_777):
        h.update(data[i:i + 777_777])
    assert h.finish() == hash_file(tmp_path / "f") == hash_bytes(data)


def test_a_read_error_in_the_reader_thread_reaches_the_caller():
    from registry.hashing import hash_stream

    class Failing:
        def __init__(self) -> None:
            self.calls = 0

        def readinto(self, buf):
            self.calls += 1
            if self.calls > 2:
                raise OSError(5, "Input/output error")
            buf[:] = bytes(len(buf))
            return len(buf)

    with pytest.raises(OSError, match="Input/output error"):
        hash_stream(Failing(), 10 * _PIPELINE_MIN)
