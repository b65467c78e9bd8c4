"""Content-addressed blob storage. Never imports the catalog."""

from registry.store.blobs import BlobStore, BlobWriter, StoredBlob
from registry.store.check import BlobCheck, ExpectedBlob, check_blobs
from registry.store.statcache import StatCache

__all__ = ["BlobCheck", "BlobStore", "BlobWriter", "ExpectedBlob", "StatCache", "StoredBlob", "check_blobs"]
