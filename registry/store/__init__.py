"""Content-addressed blob storage. Never imports the catalog."""

from registry.store.blobs import BlobStore, BlobWriter, StagedBlob, StoredBlob
from registry.store.check import BlobCheck, ExpectedBlob, check_blobs
from registry.store.statcache import StatCache

__all__ = ["BlobCheck", "BlobStore", "BlobWriter", "StagedBlob", "ExpectedBlob", "StatCache", "StoredBlob", "check_blobs"]
