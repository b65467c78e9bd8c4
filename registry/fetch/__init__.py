"""The Hub client: revisions, trees and verified-as-they-arrive byte streams from the Hub or any
HF-compatible mirror, over huggingface_hub. Returns bytes and metadata; never writes the catalog."""

from registry.fetch.hub import EndpointUnreachable, HubClient, RemoteFile, RemoteRepo, Sink
from registry.fetch.progress import NullProgress, Progress

__all__ = ["EndpointUnreachable", "HubClient", "NullProgress", "Progress", "RemoteFile", "RemoteRepo", "Sink"]
