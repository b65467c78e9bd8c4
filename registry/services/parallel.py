"""Blob transfers on a thread pool: every task runs, or the first failure stops the others and is raised
(an integrity failure first: it says the most about the other side). Thread-safe counters beside it."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait

from registry.errors import IntegrityError


class Stopped(Exception):
    """Raised by a task that saw ``stop`` set: another task failed, this one gave up."""


class Tally:
    """Counters that worker threads add to."""

    def __init__(self) -> None:
        self._counts: Counter[str] = Counter()
        self._lock = threading.Lock()

    def add(self, **counts: int) -> None:
        with self._lock:
            self._counts.update(counts)

    def __getitem__(self, name: str) -> int:
        with self._lock:
            return self._counts[name]


def run_all(tasks: Sequence[Callable[[], None]], workers: int, stop: threading.Event, name: str) -> None:
    """Run ``tasks`` on ``workers`` threads; on the first failure set ``stop``, cancel what has not started,
    wait for the rest, and raise the most telling error (never a mere ``Stopped``)."""
    with ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix=name) as pool:
        futures = [pool.submit(task) for task in tasks]
        done, _ = wait(futures, return_when=FIRST_EXCEPTION)
        if not any(f.exception() is not None for f in done):
            return
        stop.set()
        for f in futures:
            f.cancel()
        wait(futures)
    errors = [f.exception() for f in futures if f.done() and not f.cancelled() and f.exception() is not None
              and not isinstance(f.exception(), Stopped)]
    errors.sort(key=lambda e: not isinstance(e, IntegrityError))
    raise errors[0]  # type: ignore[misc]
