"""The content-addressed store: read-only blobs, never rewritten, concurrent writers converge, resumable
writes, mismatches leave nothing, a full disk is a StorageError, and the stat cache's fast verify."""

from __future__ import annotations

import hashlib
import multiprocessing
import os
import stat
import subprocess
from pathlib import Path

import pytest

from registry.errors import IntegrityError, StorageError, UsageError
from registry.hashing import hash_bytes
from registry.store import BlobStore, ExpectedBlob, check_blobs
from tests.add_helpers import wait_for_ctime_tick

DATA = bytes(range(256)) * 4096 + b"tail"  # 1 MiB + 4: crosses the parallel-hash threshold


@pytest.fixture
def store(tmp_path) -> BlobStore:
    return BlobStore(tmp_path / "blobs")


def _src(tmp_path: Path, data: bytes = DATA, name: str = "src.bin") -> Path:
    p = tmp_path / name
    p.write_bytes(data)
    return p


def _leftovers(store: BlobStore) -> list[Path]:
    return [p for p in store.stray_files()]


@pytest.mark.parametrize("data", [DATA, DATA * 5 + b"x"], ids=["1MiB", "5MiB-pipelined"])
def test_ingest_layout_digests_and_read_only(store, tmp_path, data):
    stored = store.ingest_file(_src(tmp_path, data))
    sha = hashlib.sha256(data).hexdigest()
    assert stored.created and stored.digests == hash_bytes(data)
    assert stored.path == store.root / "sha256" / sha[:2] / sha[2:4] / sha
    assert stored.path.read_bytes() == data
    assert stat.S_IMODE(stored.path.stat().st_mode) == 0o444
    assert store.has(sha) and [s for s, _ in store.iter_blobs()] == [sha]
    assert _leftovers(store) == []


def test_a_blob_already_present_is_never_written_again(store, tmp_path):
    first = store.ingest_file(_src(tmp_path))
    before = os.stat(first.path)
    again = store.ingest_file(_src(tmp_path, name="copy.bin"))
    assert not again.created and again.path == first.path
    after = os.stat(first.path)
    assert (after.st_ino, after.st_mtime_ns, after.st_ctime_ns) == (before.st_ino, before.st_mtime_ns, before.st_ctime_ns)
    with store.writer(expected_sha256=first.digests.sha256, expected_size=len(DATA)) as w:
        assert w.already_present
        w.write(DATA)
        assert not w.commit().created
    assert os.stat(first.path).st_ino == before.st_ino
    assert _leftovers(store) == []


def test_bad_digest_names_are_refused(store):
    for bad in ("../../etc/passwd", "A" * 64, "a" * 63, ""):
        with pytest.raises(UsageError, match="not a sha256"):
            store.path_for(bad)


def _ingest_worker(root: str, src: str, sha: str, via_writer: bool) -> bool:
    store = BlobStore(Path(root))
    if via_writer:
        with store.writer(expected_sha256=sha, expected_size=os.path.getsize(src)) as w:
            w.write(Path(src).read_bytes())
            return w.commit().created
    return store.ingest_file(Path(src)).created


def test_concurrent_writers_of_the_same_bytes_converge(store, tmp_path):
    sha = hashlib.sha256(DATA).hexdigest()
    sources = [str(_src(tmp_path, name=f"src{i}.bin")) for i in range(6)]
    ctx = multiprocessing.get_context("spawn")  # fresh interpreters: no inherited locks or threads
    with ctx.Pool(3) as pool:
        created = pool.starmap(_ingest_worker, [(str(store.root), s, sha, i % 2 == 0) for i, s in enumerate(sources)])
    assert sum(created) == 1  # exactly one process wrote the blob; the rest found it
    assert [s for s, _ in store.iter_blobs()] == [sha]
    assert store.path_for(sha).read_bytes() == DATA
    assert _leftovers(store) == []


def test_writer_resumes_a_partial_file(store):
    sha = hashlib.sha256(DATA).hexdigest()
    w = store.writer(expected_sha256=sha, expected_size=len(DATA))
    w.write(DATA[:300_000])
    w.abort(keep_partial=True)  # the connection dropped
    assert store.partial_path(sha).stat().st_size == 300_000
    assert not store.has(sha)
    w = store.writer(expected_sha256=sha, expected_size=len(DATA), resume=True)
    assert w.offset == 300_000  # the Range request starts here
    w.write(DATA[300_000:])
    stored = w.commit()
    assert stored.created and stored.digests.sha256 == sha and stored.path.read_bytes() == DATA
    assert not store.partial_path(sha).exists() and _leftovers(store) == []


def test_writer_without_resume_starts_over(store):
    sha = hashlib.sha256(DATA).hexdigest()
    w = store.writer(expected_sha256=sha, expected_size=len(DATA))
    w.write(b"garbage")
    w.abort()
    with store.writer(expected_sha256=sha, expected_size=len(DATA)) as w:
        assert w.offset == 0
        w.write(DATA)
        w.commit()
    assert store.path_for(sha).read_bytes() == DATA


@pytest.mark.parametrize("case", ["short", "wrong-bytes", "wrong-size-announced", "no-digest-wrong-size"])
def test_mismatch_leaves_no_blob_and_no_partial(store, case):
    sha = hashlib.sha256(DATA).hexdigest()
    expected_sha = None if case == "no-digest-wrong-size" else sha
    size = len(DATA) + 1 if case in ("wrong-size-announced", "no-digest-wrong-size") else len(DATA)
    data = {"short": DATA[:-1], "wrong-bytes": DATA[:-1] + b"X"}.get(case, DATA)
    with pytest.raises(IntegrityError) as info:
        with store.writer(expected_sha256=expected_sha, expected_size=size) as w:
            w.write(data)
            w.commit()
    assert "expected" in info.value.message
    assert list(store.iter_blobs()) == [] and _leftovers(store) == []


def test_writing_past_the_published_size_is_refused(store):
    sha = hashlib.sha256(DATA).hexdigest()
    with pytest.raises(IntegrityError, match="more bytes than the published size"):
        with store.writer(expected_sha256=sha, expected_size=10) as w:
            w.write(DATA)
    assert list(store.iter_blobs()) == [] and _leftovers(store) == []


def test_ingest_with_a_wrong_expected_digest_leaves_nothing(store, tmp_path):
    with pytest.raises(IntegrityError, match="expected"):
        store.ingest_file(_src(tmp_path), expected_sha256="0" * 64)
    assert list(store.iter_blobs()) == [] and _leftovers(store) == []


def test_ingest_reports_progress(store, tmp_path):
    seen: list[int] = []
    store.ingest_file(_src(tmp_path), progress=seen.append)
    assert sum(seen) == len(DATA) and seen


# ---- a full disk --------------------------------------------------------------------------------

@pytest.fixture
def tiny_tmpfs(tmp_path):
    """A real 1 MiB tmpfs (needs root and mount rights; skipped elsewhere)."""
    mnt = tmp_path / "tmpfs"
    mnt.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mnt)],
                                           capture_output=True).returncode != 0:
        pytest.skip("cannot mount a tmpfs here (not root, or no mount rights)")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_enospc_on_a_full_tmpfs_is_a_storage_error(tiny_tmpfs, tmp_path):
    store = BlobStore(tiny_tmpfs / "blobs")
    with pytest.raises(StorageError, match="no space left") as info:
        store.ingest_file(_src(tmp_path, DATA * 2))
    assert info.value.exit_code == 10
    assert list(store.iter_blobs()) == [] and _leftovers(store) == []


def test_enospc_from_dev_full_is_a_storage_error(store):
    """Runs everywhere (no root needed): the kernel's /dev/full answers every write with ENOSPC. The
    resumable partial file is pointed at it, so the real write path meets a real ENOSPC."""
    if not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full")
    sha = hashlib.sha256(DATA).hexdigest()
    store.ensure()
    partial = store.partial_path(sha)
    partial.parent.mkdir(parents=True)
    partial.symlink_to("/dev/full")
    with pytest.raises(StorageError, match="no space left"):
        with store.writer(expected_sha256=sha, expected_size=len(DATA)) as w:
            w.write(DATA)
    assert not store.has(sha)


# ---- stat cache: fast verify --------------------------------------------------------------------

def _expected(stored) -> ExpectedBlob:
    return ExpectedBlob(stored.digests.sha256, stored.digests.size, stored.digests.blake3)


def test_fast_verify_hashes_nothing_on_an_unchanged_store(store, tmp_path):
    blobs = [store.ingest_file(_src(tmp_path, DATA + bytes([i]), f"s{i}")) for i in range(3)]
    checks = check_blobs(store, store.stat_cache, [_expected(b) for b in blobs], deep=False)
    assert [c.status for c in checks] == ["ok"] * 3 and not any(c.hashed for c in checks)
    deep = check_blobs(store, store.stat_cache, [_expected(b) for b in blobs], deep=True)
    assert all(c.status == "ok" and c.hashed for c in deep)


@pytest.mark.parametrize("same_bytes", [True, False])
def test_any_write_makes_fast_verify_rehash_even_with_mtime_restored(store, tmp_path, same_bytes):
    blob = store.ingest_file(_src(tmp_path))
    st = os.stat(blob.path)
    wait_for_ctime_tick(blob.path, tmp_path / "tick")
    os.chmod(blob.path, 0o644)
    with open(blob.path, "r+b") as f:
        f.seek(1000)
        f.write(DATA[1000:1001] if same_bytes else bytes([DATA[1000] ^ 1]))
    os.chmod(blob.path, 0o444)
    os.utime(blob.path, ns=(st.st_atime_ns, st.st_mtime_ns))  # hide the write from mtime
    assert os.stat(blob.path).st_mtime_ns == st.st_mtime_ns
    [check] = check_blobs(store, store.stat_cache, [_expected(blob)], deep=False)
    assert check.hashed
    assert check.status == ("ok" if same_bytes else "changed")
    [again] = check_blobs(store, store.stat_cache, [_expected(blob)], deep=False)
    assert again.hashed != same_bytes  # re-proven bytes are cached again; changed ones never are


def test_fast_verify_catches_truncation_and_missing_blobs_without_hashing(store, tmp_path):
    a = store.ingest_file(_src(tmp_path, DATA, "a"))
    b = store.ingest_file(_src(tmp_path, DATA + b"b", "b"))
    os.chmod(a.path, 0o644)
    os.truncate(a.path, 10)
    store.remove(b.digests.sha256)
    checks = {c.sha256: c for c in check_blobs(store, store.stat_cache, [_expected(a), _expected(b)], deep=False)}
    assert checks[a.digests.sha256].status == "changed" and "size is 10" in checks[a.digests.sha256].reason
    assert checks[b.digests.sha256].status == "missing"
    assert not any(c.hashed for c in checks.values())


def test_a_rotten_blob_is_replaced_by_proven_bytes(store, tmp_path):
    blob = store.ingest_file(_src(tmp_path))
    os.chmod(blob.path, 0o644)
    with open(blob.path, "r+b") as f:
        f.write(b"\xff")  # DATA starts with 0x00
    store.stat_cache.forget([blob.digests.sha256])  # as verify does when it finds a changed blob
    again = store.ingest_file(_src(tmp_path, name="copy.bin"))
    assert again.created and again.repaired
    assert blob.path.read_bytes() == DATA and stat.S_IMODE(blob.path.stat().st_mode) == 0o444


def test_an_existing_blob_missing_from_the_stat_cache_is_checked_not_rewritten(store, tmp_path):
    blob = store.ingest_file(_src(tmp_path))
    inode = blob.path.stat().st_ino
    store.stat_cache.forget([blob.digests.sha256])  # e.g. another node wrote it on a shared filesystem
    again = store.ingest_file(_src(tmp_path, name="copy.bin"))
    assert not again.created and not again.repaired and blob.path.stat().st_ino == inode


def test_a_file_size_limit_is_a_storage_error_and_leaves_nothing(store, tmp_path):
    """RLIMIT_FSIZE (in a child process, SIGXFSZ ignored) makes the kernel fail the write with EFBIG."""
    import sys
    import textwrap

    src = _src(tmp_path, DATA * 6)
    code = textwrap.dedent(f"""
        import resource, signal, sys
        from pathlib import Path
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (2 * 1024 * 1024, 2 * 1024 * 1024))
        from registry.errors import StorageError
        from registry.store import BlobStore
        try:
            BlobStore(Path({str(store.root)!r})).ingest_file(Path({str(src)!r}))
        except StorageError as exc:
            print("StorageError", exc.exit_code, exc.message)
            sys.exit(0)
        sys.exit("no error")
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.startswith("StorageError 10 store I/O failed") and "File too large" in proc.stdout
    assert list(store.iter_blobs()) == [] and _leftovers(store) == []
