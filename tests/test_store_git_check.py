"""BlobWriter checks a published git blob sha1 at commit, whatever the file's size."""

import pytest

from registry.errors import IntegrityError
from registry.hashing import LFS_THRESHOLD, git_blob_sha1
from registry.store import BlobStore


@pytest.mark.parametrize("size", [100, LFS_THRESHOLD + 1])
def test_writer_checks_expected_git_sha1(tmp_path, size):
    store = BlobStore(tmp_path / "blobs")
    data = bytes(i % 251 for i in range(size))
    w = store.writer(expected_sha256=None, expected_size=size, expected_git_sha1=git_blob_sha1(data))
    w.write(data)
    good = w.commit().digests
    assert good.git_sha1 == git_blob_sha1(data)

    w = store.writer(expected_sha256=None, expected_size=size, expected_git_sha1="0" * 40)
    w.write(data[:-1] + b"\xff")
    with pytest.raises(IntegrityError, match="git blob sha1"):
        w.commit()
    assert [sha for sha, _ in store.iter_blobs()] == [good.sha256]  # the bad bytes were never named
    assert store.stray_files() == []
