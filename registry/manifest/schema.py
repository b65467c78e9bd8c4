"""The manifest: what a model is made of. TOML on disk (``manifests/<org>/<name>.toml``).

Pure: parsing and validation read only the file they are given. See docs/manifests.md.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from registry.errors import ManifestError
from registry.hashing import SHA1_RE, SHA256_RE
from registry.manifest.jsonread import parse_toml
from registry.paths import check_relative_path, ref_problem

SCHEMA_VERSION = 1
ROLES = ("config", "weights", "base", "adapter", "head", "visual", "tokenizer", "processor", "code")
FAMILIES = (
    "transformers",       # AutoModel/AutoTokenizer
    "peft",               # LoRA adapter over a pinned base (transformers model)
    "sentence-transformers",
    "colqwen2",           # colpali-engine ColQwen2 (+ adapter over its base)
    "colpali",            # colpali-engine ColPali (+ adapter over its base)
    "bge-m3",             # FlagEmbedding BGEM3FlagModel: encoder + colbert/sparse heads
    "visualized-bge",     # FlagEmbedding Visualized_BGE: visual .pth + text config/tokenizer
    "remote-code",        # trust_remote_code, only with every code file pinned by digest
)
REVISION_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,254}$")
REPO_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)?$")


@dataclass(frozen=True)
class FileSpec:
    path: str
    size: int | None = None
    sha256: str | None = None


@dataclass(frozen=True)
class ComponentSpec:
    role: str
    repo: str
    revision: str | None = None  # a 40-hex commit pins it; a ref name or None does not
    files: tuple[FileSpec, ...] = ()
    patterns: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    required: bool = True
    note: str = ""

    @property
    def pinned_commit(self) -> bool:
        return bool(self.revision and SHA1_RE.match(self.revision))

    @property
    def pinned_digests(self) -> bool:
        """Every file named with its sha256 (the strongest pin: bytes, not names)."""
        return bool(self.files) and not self.patterns and all(f.sha256 for f in self.files)


@dataclass(frozen=True)
class ImageSpec:
    width: int = 56
    height: int = 56
    seed: int = 0


@dataclass(frozen=True)
class SmokeSpec:
    texts: tuple[str, ...] = ("What is the capital of France?",)
    image: ImageSpec | None = None
    expect: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Inference:
    """Which rule chose the family (docs/manifests.md), and where the name or a curated manifest
    disagreed with the files (the files win)."""

    rule: str                 # a rule id (``bge-m3-head``), or ``curated`` / ``explicit``
    reason: str               # "colbert_linear.pt present"
    disagreements: tuple[str, ...] = ()

    def describe(self, family: str) -> str:
        return f"family {family}: {self.reason}"

    def to_dict(self) -> dict[str, Any]:
        return {"rule": self.rule, "reason": self.reason, "disagreements": list(self.disagreements)}


@dataclass(frozen=True)
class Manifest:
    name: str
    family: str
    components: tuple[ComponentSpec, ...]
    smoke: SmokeSpec = SmokeSpec()
    description: str = ""
    inferred: bool = False
    source: str | None = None  # the file it came from, or "inferred"
    expected_missing_keys: tuple[str, ...] = ()  # regexes of weights the family computes at run time
    base_only: bool = False  # a base other models build on: stored, verified and served, never used as a model
    inference: Inference | None = None

    def by_role(self, role: str) -> list[ComponentSpec]:
        return [c for c in self.components if c.role == role]

    def repos(self) -> list[str]:
        seen: dict[str, None] = {}
        for c in self.components:
            seen.setdefault(c.repo, None)
        return list(seen)

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA_VERSION,
            "name": self.name,
            "family": self.family,
            "description": self.description,
            "inferred": self.inferred,
            "source": self.source,
            "expected_missing_keys": list(self.expected_missing_keys),
            "base_only": self.base_only,
            "inference": None if self.inference is None else self.inference.to_dict(),
            "components": [
                {
                    "role": c.role, "repo": c.repo, "revision": c.revision, "required": c.required, "note": c.note,
                    "files": [{"path": f.path, "size": f.size, "sha256": f.sha256} for f in c.files],
                    "patterns": list(c.patterns), "exclude": list(c.exclude),
                }
                for c in self.components
            ],
            "smoke": {
                "texts": list(self.smoke.texts),
                "image": None if self.smoke.image is None else vars(self.smoke.image),
                "expect": dict(self.smoke.expect),
            },
        }


# ---- parsing ------------------------------------------------------------------------------------

class _Reader:
    """Typed access to a TOML table that reports errors as ``file: key: problem``."""

    def __init__(self, origin: str) -> None:
        self.origin = origin

    def fail(self, key: str, problem: str) -> ManifestError:
        return ManifestError(f"{self.origin}: {key}: {problem}", details={"file": self.origin, "key": key})

    def get(self, table: Mapping[str, Any], key: str, where: str, kind: type | tuple[type, ...], default: Any = ...) -> Any:
        full = f"{where}.{key}" if where else key
        if key not in table:
            if default is ...:
                raise self.fail(full, "is required")
            return default
        value = table[key]
        if isinstance(value, bool) and kind in (int, (int,)):
            raise self.fail(full, f"must be an integer, got {value!r}")
        if not isinstance(value, kind):
            names = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
            raise self.fail(full, f"must be {names}, got {type(value).__name__} {value!r}")
        return value

    def check_unknown(self, table: Mapping[str, Any], allowed: set[str], where: str) -> None:
        for key in table:
            if key not in allowed:
                full = f"{where}.{key}" if where else key
                raise self.fail(full, f"unknown key (allowed: {', '.join(sorted(allowed))})")


def parse_manifest(data: Mapping[str, Any], origin: str, *, default_name: str | None = None) -> Manifest:
    r = _Reader(origin)
    r.check_unknown(data, {"schema", "name", "family", "description", "component", "smoke", "expected_missing_keys",
                           "base_only"}, "")
    schema = r.get(data, "schema", "", int, SCHEMA_VERSION)
    if schema != SCHEMA_VERSION:
        raise r.fail("schema", f"unsupported schema version {schema} (this registry reads {SCHEMA_VERSION})")
    name = r.get(data, "name", "", str, default_name if default_name is not None else ...)
    if not REPO_ID_RE.match(name):
        raise r.fail("name", f"{name!r} is not a repo id like 'org/name'")
    family = r.get(data, "family", "", str)
    if family not in FAMILIES:
        raise r.fail("family", f"unknown loader family {family!r} (known: {', '.join(FAMILIES)})")
    raw_components = r.get(data, "component", "", list)
    if not raw_components:
        raise r.fail("component", "a manifest needs at least one component")
    components = tuple(_parse_component(r, c, i, name) for i, c in enumerate(raw_components))
    smoke = _parse_smoke(r, r.get(data, "smoke", "", dict, {}))
    emk = tuple(r.get(data, "expected_missing_keys", "", list, []))
    for i, pattern in enumerate(emk):
        try:
            re.compile(pattern)
        except (re.error, TypeError) as exc:
            raise r.fail(f"expected_missing_keys[{i}]", f"not a regular expression: {exc}") from exc
    return Manifest(
        name=name, family=family, components=components, smoke=smoke,
        description=r.get(data, "description", "", str, ""), inferred=False, source=origin,
        expected_missing_keys=emk, base_only=r.get(data, "base_only", "", bool, False),
    )


def _parse_component(r: _Reader, raw: Any, index: int, model_name: str) -> ComponentSpec:
    where = f"component[{index}]"
    if not isinstance(raw, dict):
        raise r.fail(where, "must be a table")
    r.check_unknown(raw, {"role", "repo", "revision", "files", "patterns", "exclude", "required", "note"}, where)
    role = r.get(raw, "role", where, str)
    if role not in ROLES:
        raise r.fail(f"{where}.role", f"unknown role {role!r} (known: {', '.join(ROLES)})")
    repo = r.get(raw, "repo", where, str, model_name)
    if not REPO_ID_RE.match(repo):
        raise r.fail(f"{where}.repo", f"{repo!r} is not a repo id like 'org/name'")
    revision = r.get(raw, "revision", where, str, None)
    if revision is not None and (not REVISION_RE.match(revision) or ref_problem(revision) is not None):
        raise r.fail(f"{where}.revision", f"{revision!r} is not a commit id or a ref name like 'main' or 'v1.0'"
                                          f" ({ref_problem(revision) or 'unusual characters'})")
    files: list[FileSpec] = []
    for j, f in enumerate(r.get(raw, "files", where, list, [])):
        fwhere = f"{where}.files[{j}]"
        if isinstance(f, str):
            f = {"path": f}
        if not isinstance(f, dict):
            raise r.fail(fwhere, "must be a path string or a table {path, size, sha256}")
        r.check_unknown(f, {"path", "size", "sha256"}, fwhere)
        path = r.get(f, "path", fwhere, str)
        try:
            check_relative_path(path)
        except ValueError as exc:
            raise r.fail(f"{fwhere}.path", str(exc)) from exc
        size = r.get(f, "size", fwhere, int, None)
        if size is not None and size < 0:
            raise r.fail(f"{fwhere}.size", "must not be negative")
        sha = r.get(f, "sha256", fwhere, str, None)
        if sha is not None and not SHA256_RE.match(sha):
            raise r.fail(f"{fwhere}.sha256", f"{sha!r} is not 64 lowercase hex characters")
        files.append(FileSpec(path, size, sha))
    patterns = tuple(r.get(raw, "patterns", where, list, []))
    exclude = tuple(r.get(raw, "exclude", where, list, []))
    for k, p in [("patterns", p) for p in patterns] + [("exclude", p) for p in exclude]:
        if not isinstance(p, str) or not p:
            raise r.fail(f"{where}.{k}", f"entries must be non-empty glob strings, got {p!r}")
    if not files and not patterns:
        raise r.fail(where, "needs 'files' or 'patterns'")
    paths = [f.path for f in files]
    if len(set(paths)) != len(paths):
        raise r.fail(f"{where}.files", "names a file twice")
    return ComponentSpec(
        role=role, repo=repo, revision=revision, files=tuple(files), patterns=patterns, exclude=exclude,
        required=r.get(raw, "required", where, bool, True), note=r.get(raw, "note", where, str, ""),
    )


def _parse_smoke(r: _Reader, raw: Mapping[str, Any]) -> SmokeSpec:
    r.check_unknown(raw, {"texts", "image", "expect"}, "smoke")
    texts = tuple(r.get(raw, "texts", "smoke", list, list(SmokeSpec().texts)))
    if not texts or not all(isinstance(t, str) and t for t in texts):
        raise r.fail("smoke.texts", "must be a list of non-empty strings")
    image = None
    if "image" in raw:
        img = r.get(raw, "image", "smoke", dict)
        r.check_unknown(img, {"width", "height", "seed"}, "smoke.image")
        image = ImageSpec(
            width=r.get(img, "width", "smoke.image", int, 56),
            height=r.get(img, "height", "smoke.image", int, 56),
            seed=r.get(img, "seed", "smoke.image", int, 0),
        )
        if not (8 <= image.width <= 4096 and 8 <= image.height <= 4096):
            raise r.fail("smoke.image", "width and height must be between 8 and 4096")
    return SmokeSpec(texts=texts, image=image, expect=dict(r.get(raw, "expect", "smoke", dict, {})))


def load_manifest_file(path: Path) -> Manifest:
    origin = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise ManifestError(f"{origin}: manifest file not found", details={"file": origin}) from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise ManifestError(f"{origin}: cannot read manifest: {exc}", details={"file": origin}) from exc
    return parse_manifest(parse_toml(text, origin), origin)


def curated_manifest_path(manifests_dir: Path, name: str) -> Path | None:
    if not REPO_ID_RE.match(name):
        return None
    path = Path(manifests_dir) / f"{name}.toml"
    return path if path.is_file() else None
