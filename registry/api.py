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
        registry: Registry | None = None, settings: Settings | None = None) -> Any:
    from registry.services.add import add_folder

    return add_folder(_registry(registry, settings), path, name, revision=revision,
                      manifest_file=Path(manifest) if manifest else None)


def verify(*names: str, deep: bool = False, registry: Registry | None = None, settings: Settings | None = None) -> Any:
    from registry.services.verify import verify as _verify

    return _verify(_registry(registry, settings), names, deep=deep)


def pull(repo_id: str, *, revision: str | None = None, endpoint: str | None = None, token: str | None = None,
         manifest: str | Path | None = None, registry: Registry | None = None, settings: Settings | None = None,
         retries: int = 5, backoff: float = 1.0) -> Any:
    """Pull a complete, verified snapshot (and the repos it depends on); returns a frozen ``PullResult``."""
    from registry.services.pull import pull as _pull

    return _pull(_registry(registry, settings), repo_id, revision=revision, manifest_file=manifest,
                 endpoint=endpoint, token=token, retries=retries, backoff=backoff)


def sign(name: str, key: str | Path, *, registry: Registry | None = None, settings: Settings | None = None) -> Any:
    """An OpenSSF model-signing signature of the model, from the catalog's digests; returns a ``SignResult``."""
    from registry.services.signing import sign_model

    return sign_model(_registry(registry, settings), name, key)


def verify_signature(name: str, *, key: str | Path | None = None, deep: bool = False,
                     registry: Registry | None = None, settings: Settings | None = None) -> Any:
    """Check the model's signature by ``key`` (or by the trust policy's signers); raises SignatureError otherwise."""
    from registry.services.signing import verify_model_signature

    return verify_model_signature(_registry(registry, settings), name, key_path=key, deep=deep)


def load(name: str, device: str = "auto", *, dtype: str = "auto", registry: Registry | None = None,
         settings: Settings | None = None) -> tuple[Any, Any]:
    """The ready model (eval, no grad, checked) and its processor or tokenizer, through the registry's gate."""
    from registry.services.load import load_model

    loaded = load_model(_registry(registry, settings), name, device=device, dtype=dtype)
    return loaded.model, loaded.processor


def register(name: str, *, smoke: bool = True, device: str = "auto", dtype: str = "auto",
             registry: Registry | None = None, settings: Settings | None = None) -> Any:
    from registry.services.register import register_model

    return register_model(_registry(registry, settings), name, smoke=smoke, device=device, dtype=dtype)
