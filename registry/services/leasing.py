"""``@leased("pull")``: run a use case under a store lease (registry/store/leases.py), so that ``gc`` never
removes the blobs it writes, or looks up to reuse, before its catalog transaction references them."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Concatenate, ParamSpec, TypeVar

from registry.services.context import Registry

P = ParamSpec("P")
R = TypeVar("R")


def leased(purpose: str) -> Callable[[Callable[Concatenate[Registry, P], R]], Callable[Concatenate[Registry, P], R]]:
    def wrap(fn: Callable[Concatenate[Registry, P], R]) -> Callable[Concatenate[Registry, P], R]:
        @functools.wraps(fn)
        def run(reg: Registry, *args: P.args, **kwargs: P.kwargs) -> R:
            first = args[0] if args else ""
            subject = ",".join(map(str, first)) if isinstance(first, (list, tuple)) else str(first)
            with reg.store.lease(f"{purpose} {subject}".strip()):
                return fn(reg, *args, **kwargs)
        return run
    return wrap
