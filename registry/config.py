"""Settings: one frozen object built from flags and the environment, passed explicitly."""

from __future__ import annotations

import getpass
import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path

DEFAULT_ENDPOINT = "https://huggingface.co"


def _truthy(value: str | None) -> bool:
    return (value or "").strip().upper() in {"1", "ON", "YES", "TRUE"}


def _falsy(value: str | None) -> bool:
    return (value or "").strip().upper() in {"0", "OFF", "NO", "FALSE"}


def _package_or_repo_dir(installed: str, in_repo: str) -> Path:
    """Data shipped inside the wheel (``registry/_x``) or, in a checkout, at the repo root."""
    pkg = Path(__file__).resolve().parent
    packaged = pkg / installed
    return packaged if packaged.exists() else pkg.parent / in_repo


@dataclass(frozen=True)
class Settings:
    home: Path
    database_url: str
    endpoint: str = DEFAULT_ENDPOINT
    token: str | None = None
    offline: bool = False
    manifests_dir: Path = _package_or_repo_dir("_manifests", "manifests")
    actor: str = "unknown"
    host: str = "unknown"
    # `add` and `pull` end with the smoke registration unless this is off (REGISTRY_SMOKE=0: mirror hosts
    # that ingest but never run inference) or the command says --no-smoke.
    smoke_after_ingest: bool = True
    # A trust policy (REGISTRY_TRUST / --trust): import, pull, deploy and serve then need trusted signatures.
    trust_file: Path | None = None

    @property
    def blobs_dir(self) -> Path:
        return self.home / "blobs"

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: object) -> "Settings":
        env = os.environ if env is None else env
        home = Path(env.get("REGISTRY_HOME") or Path.home() / ".registry").expanduser().resolve()
        url = env.get("REGISTRY_DATABASE_URL") or f"sqlite:///{home / 'catalog.db'}"
        if url.startswith("postgresql://"):
            # psycopg 3 is the driver we ship; plain postgresql:// would pick psycopg2.
            url = "postgresql+psycopg://" + url[len("postgresql://"):]
        try:
            actor = getpass.getuser()
        except (KeyError, OSError):
            actor = "unknown"
        settings = cls(
            home=home,
            database_url=url,
            endpoint=(env.get("HF_ENDPOINT") or DEFAULT_ENDPOINT).rstrip("/"),
            token=env.get("HF_TOKEN") or None,
            offline=_truthy(env.get("HF_HUB_OFFLINE")) or _truthy(env.get("REGISTRY_OFFLINE")),
            manifests_dir=Path(env["REGISTRY_MANIFESTS"]) if env.get("REGISTRY_MANIFESTS") else _package_or_repo_dir("_manifests", "manifests"),
            actor=env.get("REGISTRY_ACTOR") or actor,
            host=env.get("REGISTRY_NODE") or socket.gethostname(),
            smoke_after_ingest=not _falsy(env.get("REGISTRY_SMOKE")),
            trust_file=Path(env["REGISTRY_TRUST"]).expanduser() if env.get("REGISTRY_TRUST") else None,
        )
        clean = {k: v for k, v in overrides.items() if v is not None}
        return replace(settings, **clean) if clean else settings  # type: ignore[arg-type]


def migrations_dir() -> Path:
    return _package_or_repo_dir("_migrations", "migrations")


def alembic_ini() -> Path:
    return _package_or_repo_dir("_alembic.ini", "alembic.ini")


def package_version() -> str:
    """The installed package's version (pyproject.toml is the one place it is written)."""
    import importlib.metadata

    try:
        return importlib.metadata.version("registry")
    except importlib.metadata.PackageNotFoundError:  # a source tree that was never installed
        return "0+unknown"
