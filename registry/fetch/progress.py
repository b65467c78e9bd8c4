"""The ``Progress`` protocol that downloads and hashing report through, and its silent default.

The bars themselves live in the CLI (``registry.cli.progress``): services never draw anything.
"""

from __future__ import annotations

from typing import Protocol


class Progress(Protocol):
    def begin(self, total_bytes: int, files: int) -> None: ...
    def file_begin(self, key: str, name: str, size: int, offset: int) -> None: ...
    def advance(self, key: str, n: int) -> None: ...
    def file_end(self, key: str) -> None: ...
    def end(self) -> None: ...


class NullProgress:
    def begin(self, total_bytes: int, files: int) -> None:
        pass

    def file_begin(self, key: str, name: str, size: int, offset: int) -> None:
        pass

    def advance(self, key: str, n: int) -> None:
        pass

    def file_end(self, key: str) -> None:
        pass

    def end(self) -> None:
        pass
