"""Progress bars on stderr: one overall bar (bytes, rate, ETA) and a bar per large file in flight.

Drawn only when stderr is a terminal and neither ``--quiet`` nor ``HF_HUB_DISABLE_PROGRESS_BARS`` asks for
silence (the `hf` CLI's habits); logs and pipes never get bar noise. Sizes use the same decimal units as
every summary (kB, MB, GB: ``human_size``).
"""

from __future__ import annotations

import os
import sys
import threading
from typing import Any, TextIO

from registry.fetch.progress import NullProgress, Progress

FILE_BAR_MIN = 1024 * 1024  # smaller files only move the overall bar: 200 tiny bars would just flicker
_quiet = False


def set_quiet(quiet: bool) -> None:
    global _quiet
    _quiet = quiet


def is_quiet() -> bool:
    return _quiet


def bars_wanted(stream: TextIO | None = None) -> bool:
    stream = stream or sys.stderr
    disabled = (os.environ.get("HF_HUB_DISABLE_PROGRESS_BARS") or "").strip().upper() in {"1", "ON", "YES", "TRUE"}
    return not _quiet and not disabled and stream.isatty()


def silence_library_bars() -> None:
    """transformers' "Loading weights" and huggingface_hub's bars read this at import: set it before they load."""
    if not bars_wanted():
        os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"


def progress_bars() -> Progress:
    return TqdmProgress(sys.stderr) if bars_wanted() else NullProgress()


class TqdmProgress:
    """tqdm bars on ``stream`` (stderr); safe to call from several download threads."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self._stream = stream or sys.stderr
        self._lock = threading.Lock()
        self._overall: Any = None
        self._bars: dict[str, Any] = {}
        self._free: list[int] = []
        self._next = 1

    def _bar(self, **kw: Any) -> Any:
        from tqdm.auto import tqdm

        return tqdm(unit="B", unit_scale=True, unit_divisor=1000, file=self._stream, dynamic_ncols=True, **kw)

    def begin(self, total_bytes: int, files: int) -> None:
        with self._lock:
            self._overall = self._bar(total=total_bytes, desc=f"pull: {files} file{'' if files == 1 else 's'}", position=0)

    def file_begin(self, key: str, name: str, size: int, offset: int) -> None:
        if size < FILE_BAR_MIN:
            return
        with self._lock:
            pos = self._free.pop(0) if self._free else self._next
            self._next = max(self._next, pos + 1)
            label = name if len(name) <= 40 else "…" + name[-39:]
            self._bars[key] = (self._bar(total=size, initial=offset, desc=label, position=pos, leave=False), pos)

    def advance(self, key: str, n: int) -> None:
        with self._lock:
            if self._overall is not None:
                self._overall.update(n)
            entry = self._bars.get(key)
            if entry is not None:
                entry[0].update(n)

    def file_end(self, key: str) -> None:
        with self._lock:
            entry = self._bars.pop(key, None)
            if entry is not None:
                entry[0].close()
                self._free.append(entry[1])
                self._free.sort()

    def end(self) -> None:
        with self._lock:
            for bar, _ in self._bars.values():
                bar.close()
            self._bars.clear()
            if self._overall is not None:
                self._overall.close()
                self._overall = None
