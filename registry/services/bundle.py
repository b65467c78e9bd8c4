"""``registry export`` / ``registry import``: carry models across an air gap.

A bundle is a folder or a single uncompressed ``.tar`` holding exactly::

    bundle.json            format, the models (resolved manifests, states, sources and refs, lineage, smoke runs)
                           and the blob table (sha256 -> size, blake3, git sha1)
    blobs/<sha256>         one file per blob

Import trusts nothing: every entry's name and type is checked first (no ``..``, absolute paths, links, devices,
duplicates or unknown files), bundle.json must agree with itself (each model's root digest recomputed, each
file's digests in the blob table), then every blob is checked for size, sha256 and blake3 as it is copied into
the store, and only then is anything recorded in the catalog, in one transaction. Blobs already in the store are
skipped, so importing a newer bundle over an older one only copies what is new.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
import math
import os
import shutil
import stat
import tarfile
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from sqlalchemy import select

from registry.catalog import states
from registry.catalog.models import Model, SmokeRun
from registry.catalog.queries import find_model
from registry.errors import ConflictError, IntegrityError, StorageError, UsageError
from registry.hashing import CHUNK, SHA1_RE, SHA256_RE
from registry.killpoints import killpoint
from registry.manifest.resolve import ResolvedManifest
from registry.manifest.schema import REPO_ID_RE
from registry.catalog.models import LINEAGE_RELATIONS
from registry.manifest.schema import FAMILIES
from registry.paths import check_relative_path, ref_problem
from registry.services.context import Registry
from registry.services.leasing import leased
from registry.services.record import RepoSource, record_model
from registry.services.verify import release_proven
from registry.store import ExpectedBlob, StagedBlob, check_blobs
from registry.services.signature_transfer import Pending, bundle_signatures, check_bundle_signatures, record_signatures

FORMAT = "registry-bundle"
VERSION = 1
INDEX = "bundle.json"
MAX_INDEX = 64 * 1024 * 1024
MAX_JSON_FILE = 50 * 1024 * 1024  # as add reads a folder's JSON configs
STATES = states.LOADABLE  # what a bundle may carry; quarantined models stay home


@dataclass(frozen=True)
class BundledModel:
    name: str
    commit: str
    state: str
    root_digest: str
    files: int
    bytes: int


@dataclass(frozen=True)
class ExportResult:
    path: str
    format: str  # dir | tar
    models: tuple[BundledModel, ...]
    blobs: int
    bytes: int


@dataclass(frozen=True)
class ImportResult:
    path: str
    format: str
    models: tuple[BundledModel, ...]
    blobs: int
    blobs_written: int
    blobs_skipped: int
    bytes_written: int
    disagreements: tuple[str, ...] = ()  # where a record's family and its files disagreed (the files win)


# ---- export -------------------------------------------------------------------------------------------

def _iso(value: dt.datetime | None) -> str | None:
    return value.isoformat() if value else None


def model_record(model: Model) -> dict[str, Any]:
    """A model's catalog rows as JSON: what a bundle (and an OCI artifact's record layer) carries."""
    sources: dict[str, dict[str, Any]] = {}
    for comp in model.components:
        rev = comp.revision
        sources[rev.repo.repo_id] = {
            "repo": rev.repo.repo_id, "commit": rev.commit_sha, "source": rev.source,
            "refs": sorted(r.name for r in rev.repo.refs if r.revision_id == rev.id),
        }
    lineage = [{"relation": l.relation, "repo": l.parent_revision.repo.repo_id, "commit": l.parent_revision.commit_sha,
                "source": l.parent_revision.source, "pinned": l.pinned} for l in model.lineage]
    smoke = [{"passed": s.passed, "device": s.device, "dtype": s.dtype, "library_versions": s.library_versions,
              "wall_ms": s.wall_ms, "output_shapes": s.output_shapes, "fingerprint": s.fingerprint, "stats": s.stats,
              "error": s.error, "created_at": _iso(s.created_at)} for s in model.smoke_runs]
    return {"name": model.name, "commit": model.revision.commit_sha, "family": model.family, "state": model.state,
            "state_reason": model.state_reason, "root_digest": model.root_digest, "manifest": model.manifest,
            "sources": sorted(sources.values(), key=lambda s: s["repo"]), "lineage": lineage, "smoke_runs": smoke}


def _collect(reg: Registry, names: Sequence[str]) -> tuple[list[dict[str, Any]], dict[str, dict[str, Any]]]:
    """The models asked for plus the models they stand on (an adapter's base), parents first."""
    if not names:
        raise UsageError("name at least one model to export")
    ordered: list[dict[str, Any]] = []
    blobs: dict[str, dict[str, Any]] = {}
    seen: set[int] = set()
    with reg.catalog.reader() as session:
        def visit(model: Model) -> None:
            if model.id in seen:
                return
            seen.add(model.id)
            if model.state not in STATES:
                raise ConflictError(
                    f"{model.name}@{model.revision.commit_sha[:12]} is {model.state}"
                    f"{' (' + model.state_reason + ')' if model.state_reason else ''}; only verified or registered "
                    "models are exported", details={"name": model.name, "state": model.state})
            for l in model.lineage:
                if l.parent_model is not None:
                    visit(l.parent_model)
            for comp in model.components:
                for f in comp.files:
                    blobs[f.blob_sha256] = {"sha256": f.blob_sha256, "size": f.blob.size, "blake3": f.blob.blake3,
                                            "git_sha1": f.blob.git_sha1}
            ordered.append(model_record(model))

        for spec in names:
            visit(find_model(session, spec))
    for sha in blobs:
        if not reg.store.has(sha):
            raise StorageError(f"blob {sha} is not in the store; run `registry verify` (nothing was exported)")
    return ordered, blobs


def _summary(record: dict[str, Any]) -> BundledModel:
    files = {(c["repo"], f["path"]): f["size"] for c in record["manifest"]["components"] for f in c["files"]}
    return BundledModel(record["name"], record["commit"], record["state"], record["root_digest"], len(files),
                        sum(files.values()))


@leased("export")
def export_bundle(reg: Registry, names: Sequence[str], output: Path | str) -> ExportResult:
    output = Path(output).expanduser().absolute()
    as_tar = output.suffix == ".tar"
    if output.exists() and (as_tar or not output.is_dir() or any(output.iterdir())):
        raise UsageError(f"--output {output} already exists; remove it or choose another --output",
                       details={"output": str(output)})
    models, blobs = _collect(reg, names)
    reg.store.claim(*blobs)  # a model removed while this runs keeps its blobs until the bundle is written
    index = json.dumps({
        "format": FORMAT, "version": VERSION, "created_at": dt.datetime.now(dt.timezone.utc).isoformat(),
        "created_by": reg.settings.actor, "host": reg.settings.host, "models": models,
        "blobs": sorted(blobs.values(), key=lambda b: b["sha256"]), "signatures": bundle_signatures(reg, models),
    }, indent=1, sort_keys=True).encode()
    output.parent.mkdir(parents=True, exist_ok=True)
    staging = output.parent / f".{output.name}.{uuid.uuid4().hex[:8]}.incomplete"
    try:
        if as_tar:
            _write_tar(reg, staging, index, blobs)
        else:
            _write_dir(reg, staging, index, blobs)
        if output.is_dir():
            output.rmdir()
        os.rename(staging, output)  # the bundle appears whole
    except OSError as exc:
        raise StorageError(f"writing {output} failed: {exc} (nothing partial was left)") from exc
    finally:
        if staging.is_dir():
            shutil.rmtree(staging, ignore_errors=True)
        elif staging.exists():
            staging.unlink()
    with reg.catalog.session() as session:
        reg.log(session, "export", ",".join(m["name"] for m in models), output=str(output), blobs=len(blobs))
    return ExportResult(str(output), "tar" if as_tar else "dir", tuple(_summary(m) for m in models), len(blobs),
                        sum(b["size"] for b in blobs.values()))


def _write_dir(reg: Registry, staging: Path, index: bytes, blobs: dict[str, dict[str, Any]]) -> None:
    (staging / "blobs").mkdir(parents=True)
    (staging / INDEX).write_bytes(index)
    for sha in blobs:
        src, dest = reg.store.path_for(sha), staging / "blobs" / sha
        try:
            os.link(src, dest)  # blobs are read-only: sharing the inode is safe
        except OSError:
            shutil.copyfile(src, dest)


def _write_tar(reg: Registry, staging: Path, index: bytes, blobs: dict[str, dict[str, Any]]) -> None:
    now = int(dt.datetime.now().timestamp())
    with tarfile.open(staging, "w", format=tarfile.PAX_FORMAT, copybufsize=CHUNK) as tar:
        info = tarfile.TarInfo(INDEX)
        info.size, info.mode, info.mtime = len(index), 0o644, now
        tar.addfile(info, io.BytesIO(index))
        for sha, meta in blobs.items():
            info = tarfile.TarInfo(f"blobs/{sha}")
            info.size, info.mode, info.mtime = meta["size"], 0o444, now
            with reg.store.open(sha) as f:
                tar.addfile(info, f)


# ---- reading a bundle ---------------------------------------------------------------------------------

def _refuse(entry: str, why: str) -> IntegrityError:
    return IntegrityError(f"bundle entry {entry!r}: {why}; nothing was imported", details={"entry": entry})


def _check_name(name: str, kind: str) -> str:
    """The entries a bundle may hold: bundle.json, blobs/ and blobs/<sha256>."""
    try:
        check_relative_path(name)
    except ValueError as exc:
        raise _refuse(name, f"unsafe name ({exc})") from exc
    if kind == "dir" and name == "blobs":
        return name
    if kind == "file" and (name == INDEX or (name.startswith("blobs/") and SHA256_RE.match(name[6:]))):
        return name
    raise _refuse(name, f"unknown {'folder' if kind == 'dir' else 'file'} (a bundle holds only {INDEX} and "
                        "blobs/<sha256>)")


class _Reader:
    """Entries of a folder or a tar, after their names and types were checked."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.format = "dir" if path.is_dir() else "tar"
        self._tar: tarfile.TarFile | None = None
        self._members: dict[str, tarfile.TarInfo] = {}
        self.sizes: dict[str, int] = {}
        if self.format == "dir":
            self._scan_dir()
        else:
            self._scan_tar()

    def _scan_dir(self) -> None:
        for dirpath, dirnames, filenames in os.walk(self.path, followlinks=False):
            here = Path(dirpath)
            for name in sorted(dirnames) + sorted(filenames):
                full = here / name
                rel = full.relative_to(self.path).as_posix()
                st = os.lstat(full)
                if stat.S_ISLNK(st.st_mode):
                    raise _refuse(rel, "a symbolic link")
                if stat.S_ISDIR(st.st_mode):
                    _check_name(rel, "dir")
                elif stat.S_ISREG(st.st_mode):
                    self.sizes[_check_name(rel, "file")] = st.st_size
                else:
                    raise _refuse(rel, "a device, socket or pipe, not a regular file")

    def _scan_tar(self) -> None:
        try:
            self._tar = tarfile.open(self.path, "r:")
            members = self._tar.getmembers()
        except (tarfile.TarError, EOFError, OSError) as exc:
            raise IntegrityError(f"{self.path}: not a readable bundle (truncated or not an uncompressed tar: {exc}); "
                                 "nothing was imported", details={"entry": None}) from exc
        for m in members:
            name = m.name[:-1] if m.name.endswith("/") else m.name
            if m.issym() or m.islnk():
                raise _refuse(m.name, f"a {'symbolic' if m.issym() else 'hard'} link (to {m.linkname!r})")
            if m.ischr() or m.isblk() or m.isfifo() or not (m.isreg() or m.isdir()):
                raise _refuse(m.name, "a device or special file, not a regular file")
            if name in self._members or name in self.sizes:
                raise _refuse(m.name, "appears twice")
            if m.isdir():
                _check_name(name, "dir")
                self._members[name] = m
                continue
            self.sizes[_check_name(name, "file")] = m.size
            self._members[name] = m

    @contextmanager
    def open(self, name: str) -> Iterator[IO[bytes]]:
        if self._tar is None:
            with open(self.path / name, "rb") as f:
                yield f
            return
        f = self._tar.extractfile(self._members[name])
        if f is None:
            raise _refuse(name, "cannot be read")
        with f:
            yield f

    def close(self) -> None:
        if self._tar is not None:
            self._tar.close()


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _read_index(reader: _Reader) -> dict[str, Any]:
    if INDEX not in reader.sizes:
        raise _refuse(INDEX, "missing: this is not a registry bundle")
    if reader.sizes[INDEX] > MAX_INDEX:
        raise _refuse(INDEX, f"{reader.sizes[INDEX]} bytes is too large")
    try:
        with reader.open(INDEX) as f:
            data = json.loads(f.read(), parse_constant=_no_constant)
    except (ValueError, EOFError, tarfile.TarError, RecursionError) as exc:
        raise _refuse(INDEX, f"not valid JSON ({type(exc).__name__}: {str(exc)[:200]})") from exc
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise _refuse(INDEX, f"not a {FORMAT}")
    if data.get("version") != VERSION:
        raise _refuse(INDEX, f"version {data.get('version')!r}; this registry reads version {VERSION}")
    return data


class _Bad(ValueError):
    """A field of a record that is not what it must be: ``field`` is its JSON path, for the message."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field, self.problem = field, problem


def _need(value: Any, field: str, kind: type | tuple[type, ...], *, none: bool = False, max_len: int | None = None,
          pattern: Any = None) -> Any:
    if value is None and none:
        return None
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if isinstance(value, bool) and bool not in kinds or not isinstance(value, kinds):
        names = " or ".join(k.__name__ for k in kinds) + (" or null" if none else "")
        raise _Bad(field, f"must be {names}, not {type(value).__name__} {_short(value)}")
    if isinstance(value, float) and not math.isfinite(value):
        raise _Bad(field, "must be a finite number")
    if max_len is not None and isinstance(value, str) and len(value) > max_len:
        raise _Bad(field, f"{len(value)} characters is longer than {max_len}")
    if pattern is not None and not pattern.match(value):
        raise _Bad(field, f"{_short(value)} is malformed")
    return value


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _field(table: dict[str, Any], key: str, where: str, kind: type | tuple[type, ...], **kw: Any) -> Any:
    field = f"{where}.{key}"
    if key not in table:
        if kw.get("none"):
            return None
        raise _Bad(field, "is missing")
    return _need(table[key], field, kind, **kw)


def _ref(value: Any, field: str) -> str:
    _need(value, field, str)
    why = ref_problem(value)
    if why is not None:
        raise _Bad(field, f"ref {value!r} is not a valid ref name ({why})")
    return value


def check_record_fields(m: Any, where: str) -> None:
    """Every field of a model record (``model_record``'s form) has its type, format and bounds, so that nothing
    fails later inside the catalog transaction: names, commits, digests, paths, family, state, sources and their
    ref names, lineage, smoke runs. Raises ``_Bad`` naming the field (``where`` is the record's JSON path)."""
    if not isinstance(m, dict):
        raise _Bad(where, f"must be an object, not {type(m).__name__}")
    _field(m, "name", where, str, pattern=REPO_ID_RE)
    _field(m, "commit", where, str, pattern=SHA1_RE)
    family = _field(m, "family", where, str, max_len=64)
    if family not in FAMILIES:
        raise _Bad(f"{where}.family", f"unknown loader family {family!r} (known: {', '.join(FAMILIES)})")
    _field(m, "state", where, str)
    _field(m, "state_reason", where, str, none=True, max_len=10_000)
    _field(m, "root_digest", where, str, pattern=SHA256_RE)
    man = _field(m, "manifest", where, dict)
    mw = f"{where}.manifest"
    if _field(man, "family", mw, str) != family:
        raise _Bad(f"{mw}.family", f"{man['family']!r} disagrees with {where}.family {family!r} (tampered)")
    _field(man, "name", mw, str, pattern=REPO_ID_RE)
    _field(man, "source", mw, str, none=True, max_len=4096)
    for key in ("smoke",):
        _field(man, key, mw, dict, none=True)
    _field(man, "inference", mw, dict, none=True)
    for i, c in enumerate(_field(man, "components", mw, list)):
        cw = f"{mw}.components[{i}]"
        _need(c, cw, dict)
        _field(c, "role", cw, str, max_len=16)
        _field(c, "repo", cw, str, pattern=REPO_ID_RE)
        _field(c, "commit", cw, str, pattern=SHA1_RE)
        for key in ("required", "pinned"):
            _field(c, key, cw, bool)
        _field(c, "note", cw, str, none=True, max_len=10_000)
        for j, f in enumerate(_field(c, "files", cw, list)):
            fw = f"{cw}.files[{j}]"
            _need(f, fw, dict)
            unknown = set(f) - {"path", "size", "sha256", "blake3", "git_oid", "lfs"}
            if unknown:
                raise _Bad(fw, f"unknown keys {sorted(unknown)}")
            path = _field(f, "path", fw, str, max_len=1000)
            try:
                check_relative_path(path)
            except ValueError as exc:
                raise _Bad(f"{fw}.path", f"unsafe path ({exc})") from exc
            if _field(f, "size", fw, int) < 0:
                raise _Bad(f"{fw}.size", "must not be negative")
            _field(f, "sha256", fw, str, pattern=SHA256_RE)
            _field(f, "blake3", fw, str, pattern=SHA256_RE)
            _field(f, "git_oid", fw, str, pattern=SHA1_RE)
            _field(f, "lfs", fw, bool)
    for i, src in enumerate(_field(m, "sources", where, list)):
        sw = f"{where}.sources[{i}]"
        _need(src, sw, dict)
        _field(src, "repo", sw, str, pattern=REPO_ID_RE)
        _field(src, "commit", sw, str, pattern=SHA1_RE)
        _field(src, "source", sw, str, max_len=1000)
        for j, ref in enumerate(_field(src, "refs", sw, list)):
            _ref(ref, f"{sw}.refs[{j}]")
    for i, l in enumerate(_field(m, "lineage", where, list)):
        lw = f"{where}.lineage[{i}]"
        _need(l, lw, dict)
        if _field(l, "relation", lw, str) not in LINEAGE_RELATIONS:
            raise _Bad(f"{lw}.relation", f"{l['relation']!r} is not one of {', '.join(LINEAGE_RELATIONS)}")
        _field(l, "repo", lw, str, pattern=REPO_ID_RE)
        _field(l, "commit", lw, str, pattern=SHA1_RE)
        _field(l, "source", lw, str, none=True, max_len=1000)
        _field(l, "pinned", lw, bool)
    for i, run in enumerate(_field(m, "smoke_runs", where, list)):
        rw = f"{where}.smoke_runs[{i}]"
        _need(run, rw, dict)
        _field(run, "passed", rw, bool)
        _field(run, "device", rw, str, max_len=64)
        _field(run, "dtype", rw, str, max_len=32)
        for key in ("library_versions", "output_shapes", "stats"):
            _field(run, key, rw, dict)
        _field(run, "wall_ms", rw, (int, float))
        _field(run, "fingerprint", rw, str, none=True, pattern=SHA256_RE)
        _field(run, "error", rw, str, none=True, max_len=100_000)
        created = _field(run, "created_at", rw, str, none=True, max_len=64)
        if created is not None:
            try:
                dt.datetime.fromisoformat(created)
            except ValueError as exc:
                raise _Bad(f"{rw}.created_at", f"{created!r} is not an ISO date and time") from exc


def check_model_record(m: dict[str, Any], refuse: Callable[[str], Exception], field: str = "model"
                       ) -> ResolvedManifest:
    """A model record (``model_record``'s form) must agree with itself: state, names, commits, the root digest
    recomputed from its files, every component's repo among its sources, clean paths. ``refuse(why)`` makes the
    error. Raises KeyError/TypeError/ValueError on a malformed record (callers say where it came from)."""
    where = f"model {m.get('name')!r}" if isinstance(m, dict) else "model"
    try:
        check_record_fields(m, field)
    except _Bad as exc:
        raise refuse(f"{where}: {exc.field}: {exc.problem}") from exc
    if m["state"] not in STATES:
        raise refuse(f"{where}: state {m['state']!r} cannot be imported")
    if not REPO_ID_RE.match(m["name"]) or not SHA1_RE.match(m["commit"]):
        raise refuse(f"{where}: malformed name or commit")
    resolved = ResolvedManifest.from_dict(m["manifest"])
    if resolved.name != m["name"] or resolved.root_digest != m["root_digest"]:
        raise refuse(f"{where}: the manifest's root digest is {resolved.root_digest}, "
                     f"the record says {m['root_digest']} (tampered)")
    repos = {s["repo"]: s for s in m["sources"]}
    for s in m["sources"]:
        if not REPO_ID_RE.match(s["repo"]) or not SHA1_RE.match(s["commit"]):
            raise refuse(f"{where}: malformed source {s!r}")
    for c in resolved.components:
        if c.repo not in repos or repos[c.repo]["commit"] != c.commit:
            raise refuse(f"{where}: component {c.role} names {c.repo}@{c.commit}, not in its sources")
        for f in c.files:
            try:
                check_relative_path(f.path)
            except ValueError as exc:
                raise refuse(f"{where}: {c.repo}: unsafe file path {f.path!r} ({exc})") from exc
    for l in m["lineage"]:
        if not REPO_ID_RE.match(l["repo"]) or not SHA1_RE.match(l["commit"]):
            raise refuse(f"{where}: malformed lineage {l!r}")
    return resolved


def _check_index(data: dict[str, Any], reader: _Reader) -> tuple[list[dict[str, Any]], dict[str, dict[str, Any]]]:
    """bundle.json must agree with itself and with the entries present; returns (models, blob table)."""
    try:
        if not isinstance(data.get("blobs"), list) or not all(isinstance(b, dict) for b in data["blobs"]):
            raise _refuse(INDEX, "blobs: must be a list of objects")
        blobs = {b["sha256"]: b for b in data["blobs"]}
        if len(blobs) != len(data["blobs"]):
            raise _refuse(INDEX, "blobs: a digest listed twice")
        for sha, b in blobs.items():
            if not (isinstance(sha, str) and SHA256_RE.match(sha) and type(b.get("size")) is int and b["size"] >= 0
                    and isinstance(b.get("blake3"), str) and SHA256_RE.match(b["blake3"])
                    and (b.get("git_sha1") is None or isinstance(b["git_sha1"], str) and SHA1_RE.match(b["git_sha1"]))):
                raise _refuse(INDEX, f"blob {sha}: malformed digests or size")
        if not isinstance(data.get("models"), list) or not data["models"]:
            raise _refuse(INDEX, "models: must be a non-empty list")
        models = list(data["models"])
        names = [(m.get("name"), m.get("commit")) for m in models if isinstance(m, dict)]
        if len(set(names)) != len(names):
            raise _refuse(INDEX, "models: the same model twice")
        for i, m in enumerate(models):
            resolved = check_model_record(m, lambda why: _refuse(INDEX, why), f"models[{i}]")
            for c in resolved.components:
                for f in c.files:
                    b = blobs.get(f.sha256)
                    if b is None or b["size"] != f.size or b["blake3"] != f.blake3:
                        raise _refuse(INDEX, f"model {m.get('name')!r}: {c.repo}/{f.path}: digests disagree with the "
                                             "blob table")
    except (KeyError, TypeError, ValueError) as exc:
        raise _refuse(INDEX, f"malformed ({type(exc).__name__}: {exc})") from exc
    present = {n[6:] for n in reader.sizes if n.startswith("blobs/")}
    for sha in sorted(present - set(blobs)):
        raise _refuse(f"blobs/{sha}", f"not listed in {INDEX} (unknown file)")
    for sha in sorted(set(blobs) - present):
        raise _refuse(f"blobs/{sha}", "listed in bundle.json but missing (truncated bundle)")
    for sha, b in blobs.items():
        if reader.sizes[f"blobs/{sha}"] != b["size"]:
            raise _refuse(f"blobs/{sha}", f"{reader.sizes[f'blobs/{sha}']} bytes, bundle.json says {b['size']} "
                                          "(truncated or tampered)")
    return models, blobs


def _files_family(reg: Registry, reader: _Reader, models: list[dict[str, Any]], blobs: dict[str, dict[str, Any]]
                  ) -> dict[int, str]:
    """For each model whose manifest was inferred, the family its files show (the gate's rules, as ``add``
    decides it), read from the bundle's own bytes (each JSON file checked against its sha256 first); the base of
    an adapter is looked up among the bundle's models, then in this catalog. Returns {index: disagreement} for
    the models whose record says otherwise: there the files win (their record is changed before anything is
    stored) and the import reports it. A record whose files no rule recognises is refused."""
    from registry.manifest.infer import family_from_files
    from registry.manifest.jsonread import expected_type, parse_json
    from registry.manifest.rules import RepoView
    from registry.services.manifests import catalog_base_lookup

    def own_files(m: dict[str, Any]) -> dict[str, dict[str, Any]]:
        return {f["path"]: f for c in m["manifest"]["components"] if c["repo"] == m["name"] for f in c["files"]}

    def reader_for(m: dict[str, Any]) -> Callable[[str], Any]:
        files = own_files(m)

        def read_json(rel: str) -> Any:
            f = files.get(rel)
            if f is None:
                return None
            if f["size"] > MAX_JSON_FILE:
                raise _refuse(INDEX, f"model {m['name']!r}: {rel} is {f['size']} bytes, too large for a JSON config")
            with reader.open(f"blobs/{f['sha256']}") as src:
                raw = src.read(MAX_JSON_FILE + 1)
            if hashlib.sha256(raw).hexdigest() != f["sha256"]:
                raise _refuse(f"blobs/{f['sha256']}", f"the bytes of {m['name']}/{rel} do not hash to their sha256 "
                                                      "(tampered)")
            return parse_json(raw, f"{m['name']}/{rel}", expect=expected_type(rel))
        return read_json

    in_bundle = {m["name"]: m for m in models}
    catalog_lookup = catalog_base_lookup(reg)

    def base_lookup(repo_id: str, revision: str | None) -> RepoView | None:
        m = in_bundle.get(repo_id)
        if m is not None:
            return RepoView(repo_id, tuple(own_files(m)), reader_for(m), m["commit"])
        return catalog_lookup(repo_id, revision)

    disagreements: dict[int, str] = {}
    for i, m in enumerate(models):
        if not m["manifest"].get("inferred"):
            continue  # a curated manifest names its family; it was checked against the known loader families
        try:
            found = family_from_files(m["name"], tuple(own_files(m)), reader_for(m), base_lookup)
        except UsageError as exc:  # a config the rules cannot read (ManifestError)
            raise _refuse(INDEX, f"model {m['name']!r}: its files cannot be read for the family ({exc.message})") \
                from exc
        if found is None:
            raise _refuse(INDEX, f"model {m['name']!r}: models[{i}].family: {m['family']!r}, but no family rule "
                                 "recognises its files (tampered)")
        if found.family != m["family"]:
            disagreements[i] = (f"{m['name']}: bundle.json says family {m['family']}, but the files say "
                                f"{found.family} ({found.reason}): the files win")
            m["family"] = m["manifest"]["family"] = found.family
            inference = m["manifest"].get("inference") or {}
            m["manifest"]["inference"] = {**inference, "rule": found.rule, "reason": found.reason,
                                          "disagreements": [*inference.get("disagreements", ()), disagreements[i]]}
    return disagreements


# ---- import ---------------------------------------------------------------------------------------------

def _stage_blob(reg: Registry, reader: _Reader, sha: str, meta: dict[str, Any]) -> StagedBlob:
    """Copy one blob into a temp file of the store, checked for size, sha256 and blake3; nothing is under its
    name until every blob of the bundle checked out (``import_bundle``)."""
    entry = f"blobs/{sha}"
    try:
        with reader.open(entry) as src:
            staged = reg.store.stage_stream(src, meta["size"], what=f"{reader.path}:{entry}")
    except (tarfile.TarError, EOFError) as exc:
        raise _refuse(entry, f"unreadable ({exc}); the bundle is truncated") from exc
    d = staged.digests
    why = (f"{d.size} bytes, bundle.json says {meta['size']} (truncated or tampered)" if d.size != meta["size"] else
           f"sha256 is {d.sha256} (tampered or corrupted in transit)" if d.sha256 != sha else
           f"blake3 is {d.blake3}, bundle.json says {meta['blake3']} (tampered)" if d.blake3 != meta["blake3"] else
           None)
    if why is not None:
        reg.store.discard(staged)
        raise _refuse(entry, why)
    return staged


def _precheck_catalog(reg: Registry, models: list[dict[str, Any]]) -> None:
    """What the catalog would refuse, asked before a byte is stored: a local quarantine the bundle may not
    overrule, and a commit whose recorded bytes differ from the bundle's (a commit's bytes cannot change)."""
    from registry.catalog.models import File, Repo, Revision

    with reg.catalog.reader() as session:
        for m in models:
            for e in session.scalars(select(Model).where(Model.name == m["name"])).all():
                _refuse_quarantined(e, m)
            for c in m["manifest"]["components"]:
                wanted = {f["path"]: f["sha256"] for f in c["files"]}
                rows = session.execute(
                    select(File.path, File.blob_sha256).join(Revision, File.revision_id == Revision.id)
                    .join(Repo, Revision.repo_id == Repo.id)
                    .where(Repo.repo_id == c["repo"], Revision.commit_sha == c["commit"])).all()
                for path, sha in rows:
                    if path in wanted and wanted[path] != sha:
                        raise ConflictError(
                            f"{c['repo']}@{c['commit'][:12]}: {path} is recorded here with sha256 {sha}, the bundle "
                            f"has {wanted[path]}; a commit's bytes cannot change (nothing was imported)",
                            details={"path": path, "recorded": sha, "seen": wanted[path]})


def _refuse_quarantined(e: Model, m: dict[str, Any]) -> None:
    # a quarantine for bad bytes is lifted by the bytes this import has just proven (states.on_record)
    if e.revision.commit_sha == m["commit"] and e.state == states.QUARANTINED \
            and states.cause_of(e.state_reason) is not states.Cause.BYTES:
        raise ConflictError(f"{m['name']}@{m['commit'][:12]} is quarantined here ({e.state_reason}); "
                            "a bundle does not overrule a local quarantine (nothing was imported). To "
                            "lift it: " + states.lifted_by(e.state_reason, m["name"]))


def add_smoke_runs(model: Model, runs: Sequence[dict[str, Any]]) -> None:
    """Copy recorded smoke runs (``model_record``'s form) onto ``model``, skipping those it already has."""
    have = {(_iso(s.created_at), s.fingerprint, s.device) for s in model.smoke_runs}
    for s in runs:
        created = dt.datetime.fromisoformat(s["created_at"]) if s.get("created_at") else None
        if (_iso(created), s["fingerprint"], s["device"]) in have:
            continue
        run = SmokeRun(passed=s["passed"], device=s["device"], dtype=s["dtype"],
                       library_versions=s["library_versions"], wall_ms=s["wall_ms"],
                       output_shapes=s["output_shapes"], fingerprint=s["fingerprint"], stats=s["stats"],
                       error=s["error"])
        if created is not None:
            run.created_at = created
        model.smoke_runs.append(run)


def _record(reg: Registry, models: list[dict[str, Any]], path: Path, signatures: list[Pending],
            disagreements: dict[int, str]) -> None:
    with reg.catalog.session() as session:
        for i, m in enumerate(models):
            existing = session.scalars(select(Model).where(Model.name == m["name"])).all()
            for e in existing:
                _refuse_quarantined(e, m)
            sources = {s["repo"]: RepoSource(s["repo"], s["commit"], s["source"], tuple(s["refs"]))
                       for s in m["sources"]}
            derived = [(l["relation"], RepoSource(l["repo"], l["commit"], l.get("source") or f"bundle:{path}"))
                       for l in m["lineage"] if l["relation"] != "base"]
            model = record_model(session, ResolvedManifest.from_dict(m["manifest"]), sources, state=m["state"],
                                 reason=m.get("state_reason"), derived_from=derived)
            model.family = m["family"]
            add_smoke_runs(model, m["smoke_runs"])
            reg.log(session, "import", m["name"], commit=m["commit"], root_digest=m["root_digest"], state=m["state"],
                    bundle=str(path), **({"disagreement": disagreements[i]} if i in disagreements else {}))
        record_signatures(session, signatures, reg.settings.actor)


@leased("import")
def import_bundle(reg: Registry, path: Path | str) -> ImportResult:
    path = Path(path).expanduser().absolute()
    if not path.exists():
        raise UsageError(f"{path}: no such bundle (a folder or a .tar written by `registry export`)")
    if path.is_symlink() or not (path.is_dir() or path.is_file()):
        raise UsageError(f"{path}: not a folder or a .tar file")
    reader = _Reader(path)
    try:
        index = _read_index(reader)
        models, blobs = _check_index(index, reader)
        disagreements = _files_family(reg, reader, models, blobs)
        signatures = check_bundle_signatures(reg, index, models)  # and the trust policy, before any byte is stored
        _precheck_catalog(reg, models)
        written = skipped = nbytes = 0
        # incremental: bytes already proven in this store are skipped, unless they rotted there (a fast verify)
        present = [ExpectedBlob(sha, meta["size"], meta["blake3"]) for sha, meta in blobs.items() if reg.store.has(sha)]
        intact = {c.sha256 for c in check_blobs(reg.store, reg.stat_cache, present, deep=False) if c.status == "ok"}
        staged: list[StagedBlob] = []
        reg.store.claim(*blobs)  # the lease names every digest before its blob appears (gc keeps them)
        try:
            for sha, meta in sorted(blobs.items()):
                if sha in intact:
                    skipped += 1
                    continue
                staged.append(_stage_blob(reg, reader, sha, meta))
                killpoint("import:after-blob-copy")
                written += 1
                nbytes += meta["size"]
            # every blob checked out: only now does any go under its name (a refusal above leaves the store as it was)
            while staged:
                reg.store.commit_staged(staged.pop())
        finally:
            for leftover in staged:
                reg.store.discard(leftover)
    finally:
        reader.close()
    killpoint("import:after-blobs")  # every blob stored, the catalog not told
    _record(reg, models, path, signatures, disagreements)
    killpoint("import:after-commit")
    release_proven(reg, set(blobs))
    return ImportResult(str(path), reader.format, tuple(_summary(m) for m in models), len(blobs), written, skipped,
                        nbytes, tuple(disagreements.values()))
