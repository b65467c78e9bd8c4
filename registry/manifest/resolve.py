"""From a manifest and a repo's file listing to the files each component needs (``select``), and from
those files' digests to the resolved, locked form stored in the catalog (``lock``). Pure."""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from registry.hashing import root_digest
from registry.manifest.required import is_ignored
from registry.manifest.schema import ComponentSpec, Manifest


@dataclass(frozen=True)
class RepoFile:
    """What a listing (a local folder or the Hub's tree) says about one file."""

    path: str
    size: int
    sha256: str | None = None  # the LFS oid, or computed locally
    git_oid: str | None = None
    lfs: bool = False


@dataclass(frozen=True)
class Selection:
    component: ComponentSpec
    paths: tuple[str, ...]
    missing: tuple[str, ...] = ()     # "role: path" for each required file that is absent
    mismatched: tuple[str, ...] = ()  # "role: path: ..." where the listing contradicts the manifest


def _names_folder(pattern: str, path: str) -> bool:
    """A pattern that spells out an ignored folder (``onnx/*``) asks for it; ``*/x`` does not."""
    return "/" in pattern and pattern.split("/", 1)[0] == path.split("/", 1)[0]


def select(component: ComponentSpec, listing: Mapping[str, RepoFile]) -> Selection:
    chosen: dict[str, None] = {}
    missing: list[str] = []
    mismatched: list[str] = []
    for spec in component.files:
        entry = listing.get(spec.path)
        if entry is None:
            if component.required:
                missing.append(f"{component.role}: {spec.path}")
            continue
        chosen[spec.path] = None
        if spec.size is not None and entry.size != spec.size:
            mismatched.append(f"{component.role}: {spec.path}: size is {entry.size}, the manifest expects {spec.size}")
        if spec.sha256 and entry.sha256 and entry.sha256 != spec.sha256:
            mismatched.append(
                f"{component.role}: {spec.path}: sha256 is {entry.sha256}, the manifest expects {spec.sha256}"
            )
    for pattern in component.patterns:
        matched = [
            p for p in sorted(listing)
            if fnmatch.fnmatchcase(p, pattern) and (not is_ignored(p) or _names_folder(pattern, p))
            and not any(fnmatch.fnmatchcase(p, x) for x in component.exclude)
        ]
        if not matched and component.required:
            missing.append(f"{component.role}: {pattern} (no file matches)")
        for p in matched:
            chosen[p] = None
    return Selection(component, tuple(chosen), tuple(missing), tuple(mismatched))


@dataclass(frozen=True)
class LockedFile:
    path: str
    size: int
    sha256: str
    blake3: str
    git_oid: str
    lfs: bool

    def to_dict(self) -> dict[str, Any]:
        return dict(vars(self))


@dataclass(frozen=True)
class LockedComponent:
    role: str
    repo: str
    commit: str
    required: bool
    pinned: bool  # by a 40-hex commit or by every file's sha256
    files: tuple[LockedFile, ...]
    note: str = ""
    digest_pinned: bool = False  # every file named with its sha256 in the manifest (what remote code needs)

    def to_dict(self) -> dict[str, Any]:
        return {
            "role": self.role, "repo": self.repo, "commit": self.commit, "required": self.required,
            "pinned": self.pinned, "digest_pinned": self.digest_pinned, "note": self.note,
            "files": [f.to_dict() for f in self.files],
        }


@dataclass(frozen=True)
class ResolvedManifest:
    """The locked form: every file with its size and digests, and the root digest over all of them."""

    name: str
    family: str
    inferred: bool
    source: str | None
    components: tuple[LockedComponent, ...]
    smoke: Mapping[str, Any] = field(default_factory=dict)
    expected_missing_keys: tuple[str, ...] = ()
    description: str = ""
    inference: Mapping[str, Any] | None = None  # the family rule that fired, and disagreements (Inference)
    # "repo/path" of files whose digests no manifest pinned: taken on first use from first_use_source
    first_use: tuple[str, ...] = ()
    first_use_source: str = ""

    @property
    def family_rule(self) -> str:
        """"family bge-m3: colbert_linear.pt present", or "" for rows recorded before rules were kept."""
        reason = (self.inference or {}).get("reason")
        return f"family {self.family}: {reason}" if reason else ""

    @property
    def root_digest(self) -> str:
        return root_digest({(f"{c.repo}/{f.path}", f.size, f.sha256) for c in self.components for f in c.files})

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": 1, "name": self.name, "family": self.family, "inferred": self.inferred, "source": self.source,
            "description": self.description, "expected_missing_keys": list(self.expected_missing_keys),
            "smoke": dict(self.smoke), "components": [c.to_dict() for c in self.components],
            "inference": None if self.inference is None else dict(self.inference),
            "first_use": list(self.first_use), "first_use_source": self.first_use_source,
            "root_digest": self.root_digest,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "ResolvedManifest":
        return cls(
            name=data["name"], family=data["family"], inferred=bool(data.get("inferred")), source=data.get("source"),
            description=data.get("description", ""), expected_missing_keys=tuple(data.get("expected_missing_keys", ())),
            smoke=dict(data.get("smoke", {})),
            inference=dict(data["inference"]) if isinstance(data.get("inference"), dict) else None,
            first_use=tuple(data.get("first_use", ())), first_use_source=str(data.get("first_use_source", "")),
            components=tuple(
                LockedComponent(
                    role=c["role"], repo=c["repo"], commit=c["commit"], required=c["required"], pinned=c["pinned"],
                    note=c.get("note", ""), files=tuple(LockedFile(**f) for f in c["files"]),
                    digest_pinned=bool(c.get("digest_pinned", False)),
                )
                for c in data["components"]
            ),
        )


def lock(
    manifest: Manifest,
    selections: Sequence[Selection],
    commits: Mapping[str, str],
    files: Mapping[tuple[str, str], LockedFile],
    *,
    first_use_source: str = "",
) -> ResolvedManifest:
    """``commits[repo]`` is the resolved commit; ``files[(repo, path)]`` each selected file's digests;
    ``first_use_source`` is where the digests the manifest does not pin came from (an endpoint, a folder)."""
    components = []
    first_use: list[str] = []
    for sel in selections:
        pinned = {f.path for f in sel.component.files if f.sha256}
        first_use.extend(f"{sel.component.repo}/{p}" for p in sel.paths if p not in pinned)
        c = sel.component
        components.append(LockedComponent(
            role=c.role, repo=c.repo, commit=commits[c.repo], required=c.required,
            pinned=c.pinned_commit or c.pinned_digests, note=c.note,
            files=tuple(files[(c.repo, p)] for p in sel.paths), digest_pinned=c.pinned_digests,
        ))
    smoke = manifest.to_dict()["smoke"]
    return ResolvedManifest(
        name=manifest.name, family=manifest.family, inferred=manifest.inferred, source=manifest.source,
        components=tuple(components), smoke=smoke, expected_missing_keys=manifest.expected_missing_keys,
        description=manifest.description,
        inference=None if manifest.inference is None else manifest.inference.to_dict(),
        first_use=tuple(first_use), first_use_source=first_use_source if first_use else "",
    )


def first_use_note(resolved: ResolvedManifest) -> str:
    """What the user is told when digests were not pinned by any manifest but taken from the source."""
    if not resolved.first_use:
        return ""
    shown = ", ".join(resolved.first_use[:3]) + (f" (+{len(resolved.first_use) - 3} more)"
                                                  if len(resolved.first_use) > 3 else "")
    return (f"{len(resolved.first_use)} of the files had no digest pinned by the manifest ({resolved.source}): "
            f"their digests were taken on first use from {resolved.first_use_source or 'the source'} and recorded "
            f"({shown}); pin them (sha256 in a manifest) to have any other bytes refused")
