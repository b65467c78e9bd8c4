"""The OpenSSF Model Signing (OMS) v1.0 format, as ``model_signing`` 1.1 writes and reads it. Pure: bytes in,
bytes or frozen values out.

A signature (``model.sig``) is a Sigstore bundle v0.3 (JSON) whose ``dsseEnvelope`` carries an in-toto Statement v1:
``predicateType https://model_signing/signature/v1.0``, ``predicate.resources`` = one ``{name, algorithm, digest}``
per file (POSIX paths relative to the model folder), ``predicate.serialization`` = how the files were enumerated and
hashed, and one subject whose sha256 is the root digest: sha256 over the raw bytes of every resource digest, in the
order listed. The DSSE signature is ECDSA over the PAE encoding of the payload. Sources: ossf/model-signing-spec
``spec/v1.0.md`` (sections 5, 6 and 8) and sigstore/model-transparency ``src/model_signing`` (``_signing/signing.py``,
``sign_ec_key.py``, ``sign_sigstore_pb.py``, ``manifest.py``, ``_serialization/file.py``).

Two details follow model_signing rather than the spec's prose: resources are sorted by path components (Python's
``PurePosixPath`` order, so ``a/b`` sorts before ``a-b``; the spec says code-point order of the whole name) and
``ignore_paths`` always names ``model.sig`` and the four git paths. Verifiers accept any order: they recompute the root
digest over the resources as listed.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from registry.errors import SignatureError
from registry.paths import check_relative_path
from registry.signing.keys import PrivateKey, PublicKey

BUNDLE_MEDIA_TYPE = "application/vnd.dev.sigstore.bundle.v0.3+json"
PAYLOAD_TYPE = "application/vnd.in-toto+json"
STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
PREDICATE_TYPE = "https://model_signing/signature/v1.0"
PREDICATE_TYPE_V01 = "https://model_signing/Digests/v0.1"
SIGNATURE_FILE = "model.sig"
GIT_PATHS = (".git", ".gitattributes", ".github", ".gitignore")  # model_signing leaves these out by default
DEFAULT_IGNORED = tuple(sorted((*GIT_PATHS, SIGNATURE_FILE)))
# The catalog holds both for every file, so a statement in either is checked without reading a byte.
HASH_TYPES = ("sha256", "blake3")
MAX_BUNDLE = 64 * 1024 * 1024
_HEX = frozenset("0123456789abcdef")


@dataclass(frozen=True)
class FileDigests:
    sha256: str
    blake3: str

    def by(self, hash_type: str) -> str:
        return self.sha256 if hash_type == "sha256" else self.blake3


@dataclass(frozen=True)
class Resource:
    name: str
    algorithm: str
    digest: str


@dataclass(frozen=True)
class Statement:
    model_name: str
    root_digest: str
    hash_type: str
    allow_symlinks: bool
    ignore_paths: tuple[str, ...]
    resources: tuple[Resource, ...]

    def digests(self) -> dict[str, str]:
        return {r.name: r.digest for r in self.resources}


@dataclass(frozen=True)
class Bundle:
    """A parsed ``model.sig``: who may have signed it and the signed payload, before any check."""

    method: str           # key | certificate | sigstore (which verificationMaterial it carries)
    hint: str | None      # key method: the signer's public-key fingerprint, when the bundle names it
    payload_type: str
    payload: bytes
    signature: bytes
    media_type: str


# ---- writing -----------------------------------------------------------------------------------------

def sort_key(name: str) -> tuple[str, ...]:
    return tuple(name.split("/"))


def is_ignored(path: str, ignore_paths: Iterable[str]) -> bool:
    """model_signing's rule: a path is ignored when it is an ignore path or lies under one."""
    return any(path == p or path.startswith(p.rstrip("/") + "/") for p in ignore_paths)


def root_digest(digests: Iterable[str]) -> str:
    h = hashlib.sha256()
    for d in digests:
        h.update(bytes.fromhex(d))
    return h.hexdigest()


def signed_files(files: Mapping[str, str]) -> dict[str, str]:
    """What ``model_signing sign`` would list of a folder holding ``files``: all but the default-ignored paths."""
    return {p: d for p, d in files.items() if not is_ignored(p, DEFAULT_IGNORED)}


def statement_payload(model_name: str, files: Mapping[str, str], *, hash_type: str = "sha256") -> bytes:
    """The in-toto statement over ``files`` (path -> hex digest), laid out as model_signing lays it out."""
    if not files:
        raise ValueError("a signature needs at least one file")
    names = sorted(files, key=sort_key)
    resources = [{"algorithm": hash_type, "name": n, "digest": files[n]} for n in names]
    statement = {
        "_type": STATEMENT_TYPE,
        "subject": [{"name": model_name, "digest": {"sha256": root_digest(files[n] for n in names)}}],
        "predicateType": PREDICATE_TYPE,
        "predicate": {
            "resources": resources,
            "serialization": {"method": "files", "allow_symlinks": False, "hash_type": hash_type,
                              "ignore_paths": list(DEFAULT_IGNORED)},
        },
    }
    return json.dumps(statement, indent=2).encode()


def pae(payload: bytes, payload_type: str = PAYLOAD_TYPE) -> bytes:
    """DSSE v1 pre-authentication encoding (secure-systems-lab/dsse protocol.md)."""
    return b"DSSEv1 %d %s %d %s" % (len(payload_type.encode()), payload_type.encode(), len(payload), payload)


def _pae_v02(payload: bytes) -> bytes:
    """model_signing 0.2's buggy PAE (bytes formatted into a str); its verifier still accepts it, so do we."""
    return f"DSSEV1 {len(PAYLOAD_TYPE)} {PAYLOAD_TYPE} {len(payload)} {payload!r}".encode()


def sign_payload(payload: bytes, key: PrivateKey) -> bytes:
    """A ``model.sig`` (compact JSON, like model_signing's) over ``payload``, signed with ``key``."""
    bundle = {
        "mediaType": BUNDLE_MEDIA_TYPE,
        "verificationMaterial": {"publicKey": {"hint": key.public.fingerprint}, "tlogEntries": []},
        "dsseEnvelope": {
            "payload": base64.b64encode(payload).decode(),
            "payloadType": PAYLOAD_TYPE,
            "signatures": [{"sig": base64.b64encode(key.sign(pae(payload))).decode(), "keyid": ""}],
        },
    }
    return json.dumps(bundle, separators=(",", ":")).encode()


# ---- reading -----------------------------------------------------------------------------------------

def _b64(value: Any, where: str, label: str) -> bytes:
    if not isinstance(value, str):
        raise SignatureError(f"{label}: {where} is not a base64 string", details={"signature": label})
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise SignatureError(f"{label}: {where} is not valid base64 ({exc})", details={"signature": label}) from exc


def _dict(value: Any, where: str, label: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise SignatureError(f"{label}: {where} is missing or not an object", details={"signature": label})
    return value


def parse_bundle(data: bytes, label: str) -> Bundle:
    """Parse a ``model.sig`` (no signature check yet). ``label`` names it in every error (a file or a model)."""
    if len(data) > MAX_BUNDLE:
        raise SignatureError(f"{label}: {len(data)} bytes is too large for a model signature",
                             details={"signature": label})
    try:
        doc = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise SignatureError(f"{label}: not a model signature: not JSON ({exc}); truncated, or not a model.sig",
                             details={"signature": label}) from exc
    doc = _dict(doc, "the bundle", label)
    media_type = doc.get("mediaType")
    if not isinstance(media_type, str) or not media_type.startswith("application/vnd.dev.sigstore.bundle"):
        raise SignatureError(f"{label}: mediaType {media_type!r} is not a Sigstore bundle",
                             details={"signature": label})
    material = _dict(doc.get("verificationMaterial"), "verificationMaterial", label)
    hint: str | None = None
    if "publicKey" in material:
        method = "key"
        pk = _dict(material["publicKey"], "verificationMaterial.publicKey", label)
        hint = pk.get("hint") or None
        if hint is not None and (not isinstance(hint, str) or len(hint) != 64 or not set(hint) <= _HEX):
            raise SignatureError(f"{label}: verificationMaterial.publicKey.hint {hint!r} is not a sha256 fingerprint",
                                 details={"signature": label})
    elif "x509CertificateChain" in material:
        method = "certificate"
    elif "certificate" in material:
        method = "sigstore"
    else:
        raise SignatureError(f"{label}: verificationMaterial holds no public key or certificate",
                             details={"signature": label})
    if "dsseEnvelope" not in doc:
        raise SignatureError(f"{label}: no dsseEnvelope (a model signature signs an in-toto statement)",
                             details={"signature": label})
    env = _dict(doc["dsseEnvelope"], "dsseEnvelope", label)
    payload = _b64(env.get("payload"), "dsseEnvelope.payload", label)
    payload_type = env.get("payloadType")
    if not isinstance(payload_type, str):
        raise SignatureError(f"{label}: dsseEnvelope.payloadType is missing", details={"signature": label})
    sigs = env.get("signatures")
    if not isinstance(sigs, list) or not sigs:
        raise SignatureError(f"{label}: dsseEnvelope.signatures is empty", details={"signature": label})
    signature = _b64(_dict(sigs[0], "dsseEnvelope.signatures[0]", label).get("sig"),
                     "dsseEnvelope.signatures[0].sig", label)
    return Bundle(method, hint, payload_type, payload, signature, media_type)


def verifies(bundle: Bundle, key: PublicKey) -> bool:
    """Whether ``key`` made this key-method bundle (model_signing's check: the hint, then ECDSA over the PAE)."""
    if bundle.method != "key" or bundle.media_type != BUNDLE_MEDIA_TYPE:
        return False
    if bundle.hint is not None and bundle.hint != key.fingerprint:
        return False
    return key.verify(bundle.signature, pae(bundle.payload, bundle.payload_type)) or (
        bundle.payload_type == PAYLOAD_TYPE and key.verify(bundle.signature, _pae_v02(bundle.payload)))


def _refuse(label: str, why: str) -> SignatureError:
    return SignatureError(f"{label}: {why}", details={"signature": label})


def parse_statement(payload_type: str, payload: bytes, label: str) -> Statement:
    """The signed statement, checked for shape, safe names and a consistent root digest."""
    if payload_type != PAYLOAD_TYPE:
        raise _refuse(label, f"payloadType {payload_type!r}, expected {PAYLOAD_TYPE}")
    try:
        doc = json.loads(payload.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise _refuse(label, f"the signed payload is not JSON ({exc})") from exc
    if not isinstance(doc, dict) or doc.get("_type") != STATEMENT_TYPE:
        raise _refuse(label, f"the payload is not an in-toto statement ({STATEMENT_TYPE})")
    if doc.get("predicateType") == PREDICATE_TYPE_V01:
        raise _refuse(label, "the deprecated v0.1 predicate (model_signing 0.2); re-sign with model_signing >= 1.0 "
                             "or `registry sign`")
    if doc.get("predicateType") != PREDICATE_TYPE:
        raise _refuse(label, f"predicateType {doc.get('predicateType')!r}, expected {PREDICATE_TYPE}")
    subjects = doc.get("subject")
    if not isinstance(subjects, list) or len(subjects) != 1 or not isinstance(subjects[0], dict):
        raise _refuse(label, "the statement must have exactly one subject")
    model_name = subjects[0].get("name")
    digest = subjects[0].get("digest")
    subject_digest = digest.get("sha256") if isinstance(digest, dict) else None
    if not isinstance(model_name, str) or not model_name:
        raise _refuse(label, "the subject has no name")
    if not isinstance(subject_digest, str) or len(subject_digest) != 64 or not set(subject_digest) <= _HEX:
        raise _refuse(label, "the subject has no sha256 root digest")
    predicate = doc.get("predicate")
    ser = predicate.get("serialization") if isinstance(predicate, dict) else None
    if not isinstance(ser, dict):
        raise _refuse(label, "predicate.serialization is missing")
    if ser.get("method") != "files":
        raise _refuse(label, f"serialization method {ser.get('method')!r}: the registry checks model_signing's "
                             "default 'files' method (one digest per file); re-sign without shards")
    hash_type = ser.get("hash_type")
    if hash_type not in HASH_TYPES:
        raise _refuse(label, f"hash_type {hash_type!r}: the registry checks {' and '.join(HASH_TYPES)} signatures")
    allow_symlinks = ser.get("allow_symlinks", False)
    ignore_paths = ser.get("ignore_paths", [])
    if not isinstance(allow_symlinks, bool) or not isinstance(ignore_paths, list):
        raise _refuse(label, "predicate.serialization: allow_symlinks must be a boolean and ignore_paths a list")
    for p in ignore_paths:
        try:
            check_relative_path(p.rstrip("/") if isinstance(p, str) else p)
        except ValueError as exc:
            raise _refuse(label, f"ignore_paths names an unsafe path: {exc}") from exc
    items = predicate.get("resources")
    if not isinstance(items, list) or not items:
        raise _refuse(label, "predicate.resources is empty: a signature lists at least one file")
    resources: list[Resource] = []
    seen: set[str] = set()
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            raise _refuse(label, f"predicate.resources[{i}] is not an object")
        name, algorithm, value = item.get("name"), item.get("algorithm"), item.get("digest")
        try:
            check_relative_path(name)
        except ValueError as exc:
            raise _refuse(label, f"the statement lists an unsafe path: {exc}") from exc
        if algorithm != hash_type:
            raise _refuse(label, f"{name}: algorithm {algorithm!r} differs from the serialization's {hash_type!r}")
        if not isinstance(value, str) or len(value) != 64 or not set(value) <= _HEX:
            raise _refuse(label, f"{name}: digest {value!r} is not 64 lowercase hex characters")
        if name in seen:
            raise _refuse(label, f"{name} is listed twice")
        seen.add(name)
        resources.append(Resource(name, algorithm, value))
    computed = root_digest(r.digest for r in resources)
    if computed != subject_digest:
        raise _refuse(label, f"the subject's root digest is {subject_digest}, but the listed files hash to "
                             f"{computed} (tampered)")
    return Statement(model_name, subject_digest, hash_type, allow_symlinks, tuple(ignore_paths), tuple(resources))


# ---- comparing ---------------------------------------------------------------------------------------

def compare(statement: Statement, files: Mapping[str, FileDigests], *, exact: bool) -> tuple[str, ...]:
    """Every way ``files`` (path -> digests) differs from what ``statement`` signs; empty when it matches.

    ``exact``: the signature must list these files and nothing else, as ``model_signing verify`` of a folder holding
    them requires (the default-ignored git paths and model.sig aside). Otherwise it only has to cover them.
    A path the signature's own ``ignore_paths`` leaves out does not excuse a file: that file would be unsigned.
    """
    signed = statement.digests()
    problems: list[str] = []
    for name in sorted(signed, key=sort_key):
        have = files.get(name)
        if have is None:
            if exact:
                problems.append(f"{name}: signed, but not among the model's files (removed or renamed after "
                                "signing, or left out by its manifest?)")
            continue
        if have.by(statement.hash_type) != signed[name]:
            problems.append(f"{name}: changed after signing (signed {statement.hash_type} {signed[name]}, "
                            f"the model has {have.by(statement.hash_type)})")
    for name in sorted(files, key=sort_key):
        if name in signed or (exact and is_ignored(name, DEFAULT_IGNORED)):
            continue
        if is_ignored(name, statement.ignore_paths):
            problems.append(f"{name}: in the model, but the signature ignores it (ignore_paths): it is unsigned")
        else:
            problems.append(f"{name}: in the model, but not signed (added or renamed after signing?)")
    return tuple(problems)
