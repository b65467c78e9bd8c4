"""What every loader family receives and returns. Pure data; no torch."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from registry.errors import SmokeFailed
from registry.loaders.runtime import Placement
from registry.manifest.resolve import ResolvedManifest


@dataclass(frozen=True)
class LoadRequest:
    """A model's resolved manifest, its files materialised as links (one folder per repo), and where to put it."""

    resolved: ResolvedManifest
    folders: Mapping[str, Path]  # repo id -> folder of links into the store
    placement: Placement

    def component_folder(self, *roles: str) -> Path:
        """The folder of the first component with one of ``roles`` (in that order of preference)."""
        for role in roles:
            for comp in self.resolved.components:
                if comp.role == role:
                    return self.folders[comp.repo]
        raise SmokeFailed(f"{self.resolved.name}: the manifest has no {' or '.join(roles)} component",
                          details={"check": "components", "roles": list(roles)})

    def has_role(self, role: str) -> bool:
        return any(c.role == role for c in self.resolved.components)

    def role_files(self, role: str) -> list[Path]:
        return [self.folders[c.repo] / f.path for c in self.resolved.components if c.role == role for f in c.files]

    def base_label(self) -> str:
        for comp in self.resolved.components:
            if comp.role == "base":
                return f"{comp.repo}@{comp.commit}"
        return self.resolved.name


@dataclass
class Loaded:
    """A ready model: eval mode, no gradients, nothing on ``meta``, all checks passed."""

    family: str
    model: Any
    processor: Any
    placement: Placement
    checks: list[str] = field(default_factory=list)   # what was proven at load, in words
    notes: list[str] = field(default_factory=list)    # degradations (e.g. text-only smoke on CPU)
    # For adapters: a context manager that runs the model with its adapter switched off.
    without_adapter: Callable[[], AbstractContextManager[Any]] | None = None
    extra: dict[str, Any] = field(default_factory=dict)


Outputs = dict[str, Any]  # output name -> numpy array


class Family(Protocol):
    """One loader family: ``load`` instantiates and checks, ``smoke`` runs fixed inputs, returns numpy arrays."""

    def load(self, request: LoadRequest) -> Loaded: ...

    def smoke(self, loaded: Loaded, texts: tuple[str, ...], image: Any | None) -> Outputs: ...
