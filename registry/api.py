"""The Python API: each function opens the registry from the environment (or takes one) and calls
a service. Results are the services' frozen result objects."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from registry.config import Settings
from registry.services.context import Registry


def _registry(registry: Registry | None, settings: Settings | None) -> Registry:
    return registry or Registry.open(settings or Settings.from_env())


def add(path: str | Path, name: str, *, revision: str | None = None, manifest: str | Path | None = None,
        register: bool | None = None, device: str = "auto", registry: Registry | None = None,
        settings: Settings | None = None) -> Any:
    """Import a local folder, then register it as ``registry add`` does; returns a frozen ``AddResult``.

    ``register``: None (default) registers unless ``REGISTRY_SMOKE=0``, like the CLI; False stops at
    ``verified`` (``--no-smoke``); True registers. ``result.state`` is the state the model ended in and
    ``result.registration`` says how the registration went."""
    from registry.services.add import add_folder

    return add_folder(_registry(registry, settings), path, name, revision=revision,
                      manifest_file=Path(manifest) if manifest else None, register=register, device=device)


def verify(*names: str, deep: bool = False, registry: Registry | None = None, settings: Settings | None = None) -> Any:
    from registry.services.verify import verify as _verify

    return _verify(_registry(registry, settings), names, deep=deep)


def pull(repo_id: str, *, revision: str | None = None, endpoint: str | None = None, token: str | None = None,
         manifest: str | Path | None = None, register: bool | None = None, device: str = "auto",
         registry: Registry | None = None, settings: Settings | None = None, retries: int = 5,
         backoff: float = 1.0) -> Any:
    """Pull a complete, verified snapshot (and the repos it depends on), then register it as ``registry pull``
    does; returns a frozen ``PullResult``. ``register`` as in ``add``."""
    from registry.services.pull import pull as _pull

    return _pull(_registry(registry, settings), repo_id, revision=revision, manifest_file=manifest,
                 endpoint=endpoint, token=token, retries=retries, backoff=backoff, register=register, device=device)


def load(name: str, device: str = "auto", *, dtype: str = "auto", as_base: bool = False,
         registry: Registry | None = None, settings: Settings | None = None) -> tuple[Any, Any]:
    """The ready model (eval, no grad, checked) and its processor or tokenizer, through the registry's gate.
    A base (``base_only``) is refused unless ``as_base=True``."""
    from registry.services.load import load_model

    loaded = load_model(_registry(registry, settings), name, device=device, dtype=dtype, as_base=as_base)
    return loaded.model, loaded.processor


def register(name: str, *, smoke: bool = True, device: str = "auto", dtype: str = "auto", as_base: bool = False,
             registry: Registry | None = None, settings: Settings | None = None) -> Any:
    from registry.services.register import register_model

    return register_model(_registry(registry, settings), name, smoke=smoke, device=device, dtype=dtype,
                          as_base=as_base)
