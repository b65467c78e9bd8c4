"""CNCF ModelPack artifacts (modelpack/model-spec ``docs/spec.md``, ``docs/config.md``,
``specs-go/v1/mediatype.go``, ``annotations.go``, ``config.go``, ``schema/config-schema.json``): built
from a resolved manifest on push, checked on pull. Pure: bytes and dicts in, bytes and dicts out.

One raw layer per file, typed by the file's role; the registry's own record (resolved manifest, states,
lineage, smoke runs) travels as one more layer, a ModelPack ``doc`` file at ``.registry/model.json``
marked with ``org.registry.record``, so that every tool that handles ModelPack handles it, and a pull
reconstructs the catalog rows. Files of other repos (an adapter's base) live in artifacts of their own,
named by digest in the ``org.registry.dependencies`` annotation.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any

from registry.errors import IntegrityError, UsageError
from registry.hashing import SHA1_RE, SHA256_RE
from registry.paths import check_relative_path

# OCI image-spec and distribution
MANIFEST_V1 = "application/vnd.oci.image.manifest.v1+json"
INDEX_V1 = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST_V2 = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
IMAGE_CONFIG = "application/vnd.oci.image.config.v1+json"
ACCEPT = ", ".join((MANIFEST_V1, INDEX_V1, DOCKER_MANIFEST_V2, DOCKER_MANIFEST_LIST))
ANNOTATION_CREATED = "org.opencontainers.image.created"
ANNOTATION_TITLE = "org.opencontainers.image.title"

# ModelPack v1 (specs-go/v1/mediatype.go, annotations.go)
ARTIFACT_TYPE = "application/vnd.cncf.model.manifest.v1+json"
CONFIG_TYPE = "application/vnd.cncf.model.config.v1+json"
WEIGHT = "application/vnd.cncf.model.weight.v1.raw"
WEIGHT_CONFIG = "application/vnd.cncf.model.weight.config.v1.raw"
DOC = "application/vnd.cncf.model.doc.v1.raw"
CODE = "application/vnd.cncf.model.code.v1.raw"
DATASET = "application/vnd.cncf.model.dataset.v1.raw"
RAW_TYPES = (WEIGHT, WEIGHT_CONFIG, DOC, CODE, DATASET)
ARCHIVE_TYPES = tuple(f"application/vnd.cncf.model.{kind}.v1.{archive}"
                      for kind in ("weight", "weight.config", "doc", "code", "dataset")
                      for archive in ("tar", "tar+gzip", "tar+zstd"))
ANNOTATION_FILEPATH = "org.cncf.model.filepath"
ANNOTATION_FILE_METADATA = "org.cncf.model.file.metadata+json"
ANNOTATION_UNTESTED = "org.cncf.model.file.mediatype.untested"

# ours
ANNOTATION_RECORD = "org.registry.record"
ANNOTATION_DEPENDENCIES = "org.registry.dependencies"
RECORD_PATH = ".registry/model.json"
RECORD_FORMAT = "registry-oci-record"
RECORD_VERSION = 1

MAX_MANIFEST = 4 * 1024 * 1024  # what distribution accepts; a larger answer is not a manifest
MAX_RECORD = 64 * 1024 * 1024
MAX_DEPENDENCY_DEPTH = 10
EPOCH = "1970-01-01T00:00:00Z"  # layers carry constant file times: pushes are reproducible (spec: Reproducibility)

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".gguf", ".onnx", ".h5", ".msgpack", ".pkl",
                   ".pickle", ".npz")
WEIGHT_ROLES = ("weights", "adapter", "base", "head", "visual")
DOC_NAMES = ("readme", "license", "licence", "notice", "copying", "citation", "model_card")


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def canonical_json(value: Any) -> bytes:
    """Sorted keys, no spaces: the same model always gives the same bytes, hence the same digest."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def media_type_for(role: str, path: str) -> str:
    """A file's ModelPack layer type, from its manifest role and its name."""
    name = PurePosixPath(path).name.lower()
    if role == "code" or name.endswith(".py"):
        return CODE
    if name.endswith((".md", ".rst")) or name.split(".", 1)[0] in DOC_NAMES:
        return DOC
    if role in WEIGHT_ROLES and name.endswith(WEIGHT_SUFFIXES):
        return WEIGHT
    return WEIGHT_CONFIG


def weight_format(paths: Sequence[str]) -> str | None:
    """``config.format`` (docs/config.md): judged by the weight files' names."""
    names = [p.lower() for p in paths]
    if any(n.endswith(".safetensors") for n in names):
        return "safetensors"
    if any(n.endswith((".bin", ".pt", ".pth", ".ckpt")) for n in names):
        return "pt"
    if any(n.endswith(".gguf") for n in names):
        return "gguf"
    if any(n.endswith(".onnx") for n in names):
        return "onnx"
    return None


@dataclass(frozen=True)
class Descriptor:
    media_type: str
    digest: str
    size: int
    annotations: Mapping[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"mediaType": self.media_type, "digest": self.digest, "size": self.size}
        if self.annotations:
            out["annotations"] = dict(self.annotations)
        return out


@dataclass(frozen=True)
class FileLayer:
    """One model file as a layer: its bytes are the store's blob ``sha256``."""

    path: str
    sha256: str
    size: int
    media_type: str
    untested: bool

    def descriptor(self) -> Descriptor:
        metadata = {"name": PurePosixPath(self.path).name, "mode": 0o644, "uid": 0, "gid": 0, "size": self.size,
                    "mtime": EPOCH, "typeflag": ord("0")}
        return Descriptor(self.media_type, f"sha256:{self.sha256}", self.size, {
            ANNOTATION_FILEPATH: self.path,
            ANNOTATION_FILE_METADATA: json.dumps(metadata, sort_keys=True, separators=(",", ":")),
            ANNOTATION_UNTESTED: "true" if self.untested else "false",
        })


@dataclass(frozen=True)
class Dependency:
    repo: str
    commit: str
    digest: str  # the dependency artifact's manifest digest, in the same repository

    def to_dict(self) -> dict[str, str]:
        return {"repo": self.repo, "commit": self.commit, "digest": self.digest}


@dataclass(frozen=True)
class BuiltArtifact:
    """Everything one push of one repo@commit sends: blobs first, the manifest last."""

    repo: str
    commit: str
    files: tuple[FileLayer, ...]
    config: bytes
    record: bytes | None
    manifest: bytes
    dependencies: tuple[Dependency, ...]

    @property
    def digest(self) -> str:
        return digest_of(self.manifest)

    def inline_blobs(self) -> dict[str, bytes]:
        """The blobs that are not store files: the config and the record."""
        out = {digest_of(self.config): self.config}
        if self.record is not None:
            out[digest_of(self.record)] = self.record
        return out


def build_artifact(*, repo: str, commit: str, created_at: str, files: Sequence[FileLayer],
                   record: Mapping[str, Any] | None, dependencies: Sequence[Dependency] = (),
                   description: str = "") -> BuiltArtifact:
    """A ModelPack manifest and config for the files of ``repo@commit`` (sorted by path)."""
    ordered = tuple(sorted(files, key=lambda f: f.path))
    layers = [f.descriptor() for f in ordered]
    record_bytes = None
    if record is not None:
        record_bytes = canonical_json({"format": RECORD_FORMAT, "version": RECORD_VERSION, "model": record})
        layers.append(Descriptor(DOC, digest_of(record_bytes), len(record_bytes), {
            ANNOTATION_FILEPATH: RECORD_PATH, ANNOTATION_RECORD: f"v{RECORD_VERSION}",
            ANNOTATION_UNTESTED: "false"}))
    descriptor: dict[str, Any] = {"name": repo, "revision": commit, "createdAt": created_at}
    if description:
        descriptor["description"] = description
    model_config: dict[str, Any] = {}
    fmt = weight_format([f.path for f in ordered if f.media_type == WEIGHT])
    if fmt:
        model_config["format"] = fmt
    config = canonical_json({"descriptor": descriptor, "config": model_config,
                             "modelfs": {"type": "layers", "diffIds": [d.digest for d in layers]}})
    annotations = {ANNOTATION_CREATED: created_at, ANNOTATION_TITLE: repo}
    if dependencies:
        annotations[ANNOTATION_DEPENDENCIES] = json.dumps([d.to_dict() for d in dependencies], sort_keys=True,
                                                          separators=(",", ":"))
    manifest = canonical_json({
        "schemaVersion": 2, "mediaType": MANIFEST_V1, "artifactType": ARTIFACT_TYPE,
        "config": Descriptor(CONFIG_TYPE, digest_of(config), len(config)).to_dict(),
        "layers": [d.to_dict() for d in layers], "annotations": annotations,
    })
    return BuiltArtifact(repo, commit, ordered, config, record_bytes, manifest, tuple(dependencies))


# ---- reading a pulled manifest -----------------------------------------------------------------------

@dataclass(frozen=True)
class PulledLayer:
    path: str
    sha256: str
    size: int
    media_type: str


@dataclass(frozen=True)
class PulledArtifact:
    """A ModelPack manifest after every check that needs no blob."""

    digest: str
    config: Descriptor
    files: Mapping[str, PulledLayer]  # by path
    record: Descriptor | None
    dependencies: tuple[Dependency, ...]


def _refuse(where: str, why: str) -> IntegrityError:
    return IntegrityError(f"{where}: {why}; nothing was recorded", details={"artifact": where})


def _sha256(where: str, digest: Any) -> str:
    if not isinstance(digest, str) or not digest.startswith("sha256:") or not SHA256_RE.match(digest[7:]):
        raise _refuse(where, f"digest {digest!r} is not sha256:<64 lowercase hex> (the only algorithm pulled)")
    return digest[7:]


def _size(where: str, size: Any) -> int:
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise _refuse(where, f"size {size!r} is not a non-negative integer")
    return size


def parse_manifest(body: bytes, content_type: str, where: str) -> PulledArtifact:
    """Check that ``body`` is a ModelPack manifest this registry can pull, and read it."""
    try:
        data = json.loads(body)
    except (UnicodeDecodeError, ValueError) as exc:
        raise _refuse(where, f"the manifest is not JSON ({exc})") from exc
    if not isinstance(data, dict):
        raise _refuse(where, "the manifest is not a JSON object")
    media_type = data.get("mediaType") or content_type.split(";")[0].strip()
    if media_type in (INDEX_V1, DOCKER_MANIFEST_LIST):
        raise UsageError(f"{where} is an image index (a multi-platform container image), not a ModelPack model; "
                         "pull a model artifact (artifactType " + ARTIFACT_TYPE + ")", details={"artifact": where})
    config = data.get("config") if isinstance(data.get("config"), dict) else {}
    artifact_type = data.get("artifactType")
    if media_type not in (MANIFEST_V1,) or (artifact_type != ARTIFACT_TYPE and config.get("mediaType") != CONFIG_TYPE):
        kind = ("a container image" if config.get("mediaType") in (IMAGE_CONFIG,
                                                                    "application/vnd.docker.container.image.v1+json")
                else f"artifact type {artifact_type or config.get('mediaType')!r}")
        raise UsageError(f"{where} is {kind} (manifest {media_type!r}), not a ModelPack model (artifactType "
                         f"{ARTIFACT_TYPE}); nothing was pulled", details={"artifact": where})
    if data.get("schemaVersion") != 2:
        raise _refuse(where, f"schemaVersion {data.get('schemaVersion')!r} is not 2")
    if config.get("mediaType") != CONFIG_TYPE:
        raise _refuse(where, f"config media type {config.get('mediaType')!r} is not {CONFIG_TYPE}")
    config_desc = Descriptor(CONFIG_TYPE, "sha256:" + _sha256(where, config.get("digest")),
                             _size(where, config.get("size")))
    layers = data.get("layers")
    if not isinstance(layers, list):
        raise _refuse(where, "layers is not a list")
    files: dict[str, PulledLayer] = {}
    record: Descriptor | None = None
    for i, layer in enumerate(layers):
        at = f"{where} layer {i}"
        if not isinstance(layer, dict):
            raise _refuse(at, "not an object")
        mt = layer.get("mediaType")
        annotations = layer.get("annotations") or {}
        if not isinstance(annotations, dict) or not all(isinstance(v, str) for v in annotations.values()):
            raise _refuse(at, "annotations are not a string map")
        sha, size = _sha256(at, layer.get("digest")), _size(at, layer.get("size"))
        if mt in ARCHIVE_TYPES:
            raise UsageError(f"{at}: media type {mt} is a tar archive; this registry pulls raw layers only (one file "
                             "per layer, as `registry push` and `modctl build --raw` write them)",
                             details={"artifact": where, "media_type": mt})
        if mt not in RAW_TYPES:
            raise _refuse(at, f"unknown media type {mt!r} (a ModelPack layer is one of {', '.join(RAW_TYPES)})")
        if ANNOTATION_RECORD in annotations:
            if annotations[ANNOTATION_RECORD] != f"v{RECORD_VERSION}":
                raise _refuse(at, f"record version {annotations[ANNOTATION_RECORD]!r}; this registry reads "
                                  f"v{RECORD_VERSION}")
            if record is not None:
                raise _refuse(at, "a second registry record layer")
            record = Descriptor(mt, f"sha256:{sha}", size)
            continue
        path = annotations.get(ANNOTATION_FILEPATH)
        if path is None:
            raise _refuse(at, f"no {ANNOTATION_FILEPATH} annotation: the file's path is unknown")
        try:
            check_relative_path(path)
        except ValueError as exc:
            raise _refuse(at, f"unsafe file path {path!r} ({exc}): the artifact is broken or hostile") from exc
        if path in files:
            raise _refuse(at, f"file path {path!r} appears twice")
        files[path] = PulledLayer(path, sha, size, mt)
    return PulledArtifact(digest_of(body), config_desc, files, record, _dependencies(data, where))


def _dependencies(data: Mapping[str, Any], where: str) -> tuple[Dependency, ...]:
    annotations = data.get("annotations") or {}
    raw = annotations.get(ANNOTATION_DEPENDENCIES) if isinstance(annotations, dict) else None
    if raw is None:
        return ()
    try:
        items = json.loads(raw)
        deps = tuple(Dependency(str(d["repo"]), str(d["commit"]), str(d["digest"])) for d in items)
    except (TypeError, ValueError, KeyError) as exc:
        raise _refuse(where, f"annotation {ANNOTATION_DEPENDENCIES} is malformed ({exc})") from exc
    for d in deps:
        _sha256(where, d.digest)
        if not SHA1_RE.match(d.commit):
            raise _refuse(where, f"dependency {d.repo}@{d.commit!r}: the commit is not 40 hex")
    return deps


def read_record(body: bytes, where: str) -> dict[str, Any]:
    try:
        data = json.loads(body)
    except (UnicodeDecodeError, ValueError) as exc:
        raise _refuse(where, f"the registry record is not JSON ({exc})") from exc
    if not isinstance(data, dict) or data.get("format") != RECORD_FORMAT or not isinstance(data.get("model"), dict):
        raise _refuse(where, f"the registry record is not a {RECORD_FORMAT}")
    if data.get("version") != RECORD_VERSION:
        raise _refuse(where, f"record version {data.get('version')!r}; this registry reads {RECORD_VERSION}")
    return data["model"]
