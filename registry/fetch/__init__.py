"""The Hub client: revisions, trees and verified-as-they-arrive byte streams from the Hub or any
HF-compatible mirror, over huggingface_hub. Returns bytes and metadata; never writes the catalog.

Names resolve on first use: the CLI's progress bars need ``registry.fetch.progress`` alone, not the client.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_NAMES = {"EndpointUnreachable": "hub", "HubClient": "hub", "RemoteFile": "hub", "RemoteRepo": "hub", "Sink": "hub",
          "NullProgress": "progress", "Progress": "progress"}
__all__ = sorted(_NAMES)


def __getattr__(name: str) -> Any:
    module = _NAMES.get(name)
    if module is None:
        raise AttributeError(f"module 'registry.fetch' has no attribute {name!r}")
    return getattr(import_module(f"registry.fetch.{module}"), name)
