"""Overlap receiving with hashing and writing: the network thread queues chunks, a second thread feeds
the sink (sha256 + blake3 + write). hashlib, blake3 and socket reads release the GIL, so on two cores
verification costs little wall time. The queue is bounded, so memory stays a few batches (of ~1 MiB) deep."""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from types import TracebackType
from typing import Any

DEPTH = 8


class Pipeline:
    def __init__(self, sink: Any, on_bytes: Callable[[int], None], depth: int = DEPTH) -> None:
        self._sink = sink
        self._on_bytes = on_bytes
        self._queue: queue.Queue[list[bytes] | None] = queue.Queue(maxsize=depth)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="pull-sink", daemon=True)

    def __enter__(self) -> "Pipeline":
        self._thread.start()
        return self

    def _run(self) -> None:
        while (batch := self._queue.get()) is not None:
            if self._error is not None:
                continue  # keep draining so the producer never blocks on a full queue
            try:
                for piece in batch:
                    self._sink.write(piece)
                self._on_bytes(sum(len(p) for p in batch))
            except BaseException as exc:  # re-raised on the producer's thread
                self._error = exc

    def write(self, batch: list[bytes]) -> None:
        """Queue a batch of pieces (the HTTP client's reads, kept as they are: no copy)."""
        if self._error is not None:
            raise self._error
        self._queue.put(batch)

    def restart(self) -> None:
        """Only before the first write of a response: nothing is queued yet."""
        self._sink.restart()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._queue.put(None)
        self._thread.join()
        if self._error is not None:
            # The sink's own failure (digest, size, disk full) wins over a network error in flight.
            raise self._error
