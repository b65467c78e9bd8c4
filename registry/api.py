"""The Python API: each function opens the registry from the environment (or uses the one it is given,
which it then leaves open) and calls a service. Results are the services' frozen result objects."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from registry.config import Settings
from registry.services.context import Registry

if TYPE_CHECKING:
    from registry.services.add import AddResult
    from registry.services.pull import PullResult
    from registry.services.register import RegisterResult
    from registry.services.signing import SignatureCheck, SignResult
    from registry.services.verify import VerifyReport


@contextmanager
def _registry(registry: Registry | None, settings: Settings | None) -> Iterator[Registry]:
    """The caller's registry, or one opened for this call and closed after it."""
    if registry is not None:
        yield registry
        return
    with Registry.open(settings or Settings.from_env()) as opened:
        yield opened


def add(path: str | Path, name: str, *, revision: str | None = None, manifest: str | Path | None = None,
        register: bool | None = None, device: str = "auto", registry: Registry | None = None,
        settings: Settings | None = None) -> AddResult:
    """Import a local folder, then register it as ``registry add`` does; returns a frozen ``AddResult``.

    ``register``: None (default) registers unless ``REGISTRY_SMOKE=0``, like the CLI; False stops at
    ``verified`` (``--no-smoke``); True registers. ``result.state`` is the state the model ended in and
    ``result.registration`` says how the registration went."""
    from registry.services.add import add_folder

    with _registry(registry, settings) as reg:
        return add_folder(reg, path, name, revision=revision, manifest_file=Path(manifest) if manifest else None,
                          register=register, device=device)


def verify(*names: str, deep: bool = False, registry: Registry | None = None,
           settings: Settings | None = None) -> VerifyReport:
    from registry.services.verify import verify as _verify

    with _registry(registry, settings) as reg:
        return _verify(reg, names, deep=deep)


def pull(repo_id: str, *, revision: str | None = None, endpoint: str | None = None, token: str | None = None,
         manifest: str | Path | None = None, register: bool | None = None, device: str = "auto",
         registry: Registry | None = None, settings: Settings | None = None, retries: int = 5,
         backoff: float = 1.0) -> PullResult:
    """Pull a complete, verified snapshot (and the repos it depends on), then register it as ``registry pull``
    does; returns a frozen ``PullResult``. ``register`` as in ``add``."""
    from registry.services.pull import pull as _pull

    with _registry(registry, settings) as reg:
        return _pull(reg, repo_id, revision=revision, manifest_file=manifest, endpoint=endpoint, token=token,
                     retries=retries, backoff=backoff, register=register, device=device)


def sign(name: str, key: str | Path, *, registry: Registry | None = None,
         settings: Settings | None = None) -> SignResult:
    """An OpenSSF model-signing signature of the model, from the catalog's digests; returns a ``SignResult``."""
    from registry.services.signing import sign_model

    with _registry(registry, settings) as reg:
        return sign_model(reg, name, key)


def verify_signature(name: str, *, key: str | Path | None = None, deep: bool = False,
                     registry: Registry | None = None, settings: Settings | None = None) -> SignatureCheck:
    """Check the model's signature by ``key`` (or by the trust policy's signers); raises SignatureError otherwise."""
    from registry.services.signing import verify_model_signature

    with _registry(registry, settings) as reg:
        return verify_model_signature(reg, name, key_path=key, deep=deep)


def load(name: str, device: str = "auto", *, dtype: str = "auto", as_base: bool = False,
         registry: Registry | None = None, settings: Settings | None = None) -> tuple[Any, Any]:
    """The ready model (eval, no grad, checked) and its processor or tokenizer, through the registry's gate.
    A base (``base_only``) is refused unless ``as_base=True``."""
    from registry.services.load import load_model

    with _registry(registry, settings) as reg:
        loaded = load_model(reg, name, device=device, dtype=dtype, as_base=as_base)
    return loaded.model, loaded.processor


def register(name: str, *, smoke: bool = True, device: str = "auto", dtype: str = "auto", as_base: bool = False,
             registry: Registry | None = None, settings: Settings | None = None) -> RegisterResult:
    from registry.services.register import register_model

    with _registry(registry, settings) as reg:
        return register_model(reg, name, smoke=smoke, device=device, dtype=dtype, as_base=as_base)
