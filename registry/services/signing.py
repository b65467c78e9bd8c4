"""``registry sign`` / ``verify-signature`` / ``add DIR --signature``: model-signing signatures made and checked from
the catalog's digests, without reading a byte of the model.

A signature covers the files of one revision of the model's own repo: exactly what ``registry deploy --layout dir``
writes, so ``model_signing verify key DIR --signature DIR/model.sig --public_key key.pub`` accepts that folder.
Signatures live in the ``signatures`` table (the ``model.sig`` bytes as signed, one per signer and revision).
"""

from __future__ import annotations

import dataclasses
import os
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import delete, select
from sqlalchemy import exc as sa_exc
from sqlalchemy.orm import Session

from registry.catalog.models import Model, Revision, Signature
from registry.catalog.queries import find_model, find_revision
from registry.errors import ConflictError, SignatureError, StorageError, UsageError
from registry.hashing import blake3_file, sha256_file
from registry.manifest.resolve import ResolvedManifest
from registry.catalog import states
from registry.services.context import Registry
from registry.services.register import register_after_ingest
from registry.signing import oms
from registry.signing.keys import PublicKey, load_private_key, load_public_key
from registry.signing.oms import SIGNATURE_FILE, FileDigests, Statement
from registry.signing.trust import SigstoreSigner

if TYPE_CHECKING:
    from registry.fetch.progress import Progress
    from registry.services.add import AddResult


@dataclass(frozen=True)
class Candidate:
    """A signature to be judged: a catalog row, or bytes from a folder, a bundle or an upstream repo."""

    method: str   # key | sigstore
    signer: str   # key fingerprint, or "identity (issuer)"
    bundle: bytes
    origin: str   # for messages: where it came from
    row_id: int | None = None


@dataclass(frozen=True)
class Group:
    """The files a model takes from one revision of one repo (its own, or a base's)."""

    repo: str
    commit: str
    revision_id: int
    files: dict[str, FileDigests]


@dataclass(frozen=True)
class SignResult:
    name: str
    commit: str
    method: str
    signer: str
    files: int
    root_digest: str
    bytes: int
    replaced: bool
    output: str | None


@dataclass(frozen=True)
class SignatureCheck:
    name: str
    commit: str
    method: str
    signer: str
    files: int
    root_digest: str
    deep: bool
    blobs_hashed: int
    bytes_hashed: int


@dataclass(frozen=True)
class SignedAdd:
    added: AddResult
    method: str
    signer: str
    files: int
    root_digest: str


# ---- catalog helpers ------------------------------------------------------------------------------------

def model_groups(model: Model) -> list[Group]:
    groups: dict[int, Group] = {}
    for comp in model.components:
        rev = comp.revision
        g = groups.setdefault(rev.id, Group(rev.repo.repo_id, rev.commit_sha, rev.id, {}))
        for f in comp.files:
            g.files[f.path] = FileDigests(f.blob_sha256, f.blob.blake3)
    own = [g for g in groups.values() if g.revision_id == model.revision_id]
    return own + [g for g in groups.values() if g.revision_id != model.revision_id]


def own_files(model: Model) -> dict[str, FileDigests]:
    return next((g.files for g in model_groups(model) if g.revision_id == model.revision_id), {})


def resolved_own_files(resolved: ResolvedManifest) -> dict[str, FileDigests]:
    return {f.path: FileDigests(f.sha256, f.blake3) for c in resolved.components if c.repo == resolved.name
            for f in c.files}


def signature_rows(session: Session, revision_ids: Iterable[int]) -> list[Signature]:
    ids = list(revision_ids)
    if not ids:
        return []
    return list(session.scalars(select(Signature).where(Signature.revision_id.in_(ids))
                                .order_by(Signature.created_at.desc(), Signature.id.desc())))


def candidate_of(row: Signature) -> Candidate:
    return Candidate(row.method, row.signer, row.bundle.encode(), f"the catalog's signature by {short(row.signer)}",
                     row.id)


def short(signer: str) -> str:
    return signer[:16] if len(signer) == 64 and signer.isalnum() else signer


def insert_signature(session: Session, revision: Revision, cand: Candidate, statement: Statement, actor: str
                     ) -> bool:
    """Record ``cand`` for ``revision``, replacing the same signer's earlier one; True when one was replaced.

    Replace is delete + insert, never update: a row's id then always names the same bytes."""
    replaced = session.execute(delete(Signature).where(Signature.revision_id == revision.id,
                                                       Signature.signer == cand.signer)).rowcount > 0
    session.add(Signature(revision_id=revision.id, method=cand.method, signer=cand.signer,
                          bundle=cand.bundle.decode(), root_digest=statement.root_digest,
                          files=len(statement.resources), actor=actor))
    session.flush()
    return replaced


def read_signature_file(path: Path | str) -> bytes:
    path = Path(path).expanduser()
    if not path.is_file():
        raise UsageError(f"--signature {path}: no such file", details={"signature": str(path)})
    if path.stat().st_size > oms.MAX_BUNDLE:
        raise SignatureError(f"{path}: {path.stat().st_size} bytes is too large for a model signature",
                             details={"signature": str(path)})
    return path.read_bytes()


def open_with_key(cand: Candidate, key: PublicKey, label: str) -> Statement:
    """The statement of a key-method signature that ``key`` made; SignatureError naming ``label`` otherwise."""
    bundle = oms.parse_bundle(cand.bundle, label)
    if bundle.method != "key":
        raise SignatureError(f"{label}: a {bundle.method} signature, not one made with a key; check it with "
                             "--identity/--issuer/--trust-config (sigstore)", details={"signature": label})
    if bundle.hint is not None and bundle.hint != key.fingerprint:
        raise SignatureError(f"{label}: signed by the key with fingerprint {bundle.hint[:16]}, not by "
                             f"{key.describe()}", details={"signature": label, "key": key.fingerprint})
    if not oms.verifies(bundle, key):
        raise SignatureError(f"{label}: the signature does not verify with {key.describe()} (the signed payload "
                             "or the signature was altered)", details={"signature": label, "key": key.fingerprint})
    return oms.parse_statement(bundle.payload_type, bundle.payload, label)


def open_keyless(cand: Candidate, signer: SigstoreSigner, label: str) -> Statement:
    from registry.signing.keyless import verify_keyless

    payload_type, payload = verify_keyless(cand.bundle, signer, label)
    return oms.parse_statement(payload_type, payload, label)


def open_signature(cand: Candidate, key: PublicKey | None, keyless: SigstoreSigner | None, label: str) -> Statement:
    if key is not None:
        return open_with_key(cand, key, label)
    assert keyless is not None
    return open_keyless(cand, keyless, label)


def _mismatch(label: str, what: str, problems: Iterable[str], hint: str = "") -> SignatureError:
    problems = list(problems)
    return SignatureError(f"{label} does not match {what}:\n  " + "\n  ".join(problems) + (f"\n{hint}" if hint else ""),
                          details={"signature": label, "problems": problems})


# ---- sign -----------------------------------------------------------------------------------------------

def sign_model(reg: Registry, spec: str, key_path: Path | str, *, output: Path | str | None = None,
               password: bytes | None = None) -> SignResult:
    """Sign the model's own files from the catalog's sha256s, as ``model_signing sign key`` over its folder would."""
    key = load_private_key(key_path, password)
    out = Path(output).expanduser().absolute() if output else None
    if out is not None and out.is_dir():
        raise UsageError(f"--output {out} is a folder; give a file path (e.g. {out / SIGNATURE_FILE})")
    with reg.catalog.session() as session:
        model = find_model(session, spec)
        label = f"{model.name}@{model.revision.commit_sha[:12]}"
        if model.state not in states.LOADABLE:
            raise ConflictError(f"{label} is {model.state}"
                                f"{' (' + model.state_reason + ')' if model.state_reason else ''}; only verified or "
                                "registered models are signed", details={"name": model.name, "state": model.state})
        files = own_files(model)
        if SIGNATURE_FILE in files:
            raise ConflictError(f"{label} has a file of its own named {SIGNATURE_FILE}, where its signature would go "
                                "(model_signing skips that name); it cannot be signed in this format",
                                details={"name": model.name})
        signed = oms.signed_files({p: d.sha256 for p, d in files.items()})
        if not signed:
            raise ConflictError(f"{label} has no file model_signing would sign (only git metadata)")
        payload = oms.statement_payload(model.name.rsplit("/", 1)[-1], signed)
        data = oms.sign_payload(payload, key)
        statement = oms.parse_statement(oms.PAYLOAD_TYPE, payload, label)
        signer = key.public.fingerprint
        try:
            replaced = insert_signature(session, model.revision, Candidate("key", signer, data, "sign"), statement,
                                        reg.settings.actor)
        except sa_exc.IntegrityError as exc:
            raise ConflictError(f"{label} was signed by the same key concurrently; run the command again") from exc
        reg.log(session, "sign", model.name, commit=model.revision.commit_sha, method="key", signer=signer,
                files=len(signed), root_digest=statement.root_digest, replaced=replaced)
        name, commit = model.name, model.revision.commit_sha
    if out is not None:
        write_atomic(out, data)
    return SignResult(name, commit, "key", signer, len(signed), statement.root_digest, len(data), replaced,
                      str(out) if out else None)


def write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise StorageError(f"cannot write {path}: {exc}") from exc


# ---- verify ---------------------------------------------------------------------------------------------

def verify_model_signature(reg: Registry, spec: str, *, key_path: Path | str | None = None,
                           keyless: SigstoreSigner | None = None, deep: bool = False) -> SignatureCheck:
    """Check the model's signature by ``key_path`` (or ``keyless``, or any signer the trust policy trusts) against
    the catalog's digests; with ``deep``, against the blobs' bytes too."""
    from registry.services.trust import TrustGate

    key = load_public_key(key_path) if key_path is not None else None
    gate = None if key is not None or keyless is not None else TrustGate.from_settings(reg.settings)
    if key is None and keyless is None and gate is None:
        raise UsageError("say whose signature to check: --key PUBLIC.pem, --identity/--issuer/--trust-config, or a "
                         "trust policy (--trust FILE or REGISTRY_TRUST)")
    with reg.catalog.reader() as session:
        model = find_model(session, spec)
        label = f"{model.name}@{model.revision.commit_sha[:12]}"
        files = own_files(model)
        rows = signature_rows(session, [model.revision_id])
        signers = ", ".join(short(r.signer) for r in rows) or "nobody"
        if gate is not None:
            proof = gate.prove(model.name, files, [candidate_of(r) for r in rows], exact=True)
            if isinstance(proof, list):
                raise SignatureError(f"{label} has no valid signature from a signer {gate.policy.source} trusts "
                                     f"({gate.policy.describe(model.name)}):\n  " + "\n  ".join(proof or
                                     [f"no signature at all (signed by: {signers})"]),
                                     details={"name": model.name, "tried": proof})
            cand, statement = proof.candidate, proof.statement
        else:
            wanted = key.fingerprint if key is not None else keyless.name  # type: ignore[union-attr]
            row = next((r for r in rows if r.signer == wanted), None)
            if row is None:
                raise SignatureError(f"{label} has no signature by {key.describe() if key else wanted} "
                                     f"(signed by: {signers}); sign it with `registry sign {model.name} --key ...`",
                                     details={"name": model.name, "signer": wanted})
            cand = candidate_of(row)
            where = f"{label}'s signature by {short(row.signer)}"
            statement = open_signature(cand, key, keyless, where)
            problems = oms.compare(statement, files, exact=True)
            if problems:
                raise _mismatch(where, f"the catalog's files of {label}", problems)
        hashed = nbytes = 0
        if deep:
            hashed, nbytes = _check_blobs(reg, label, statement, files)
    return SignatureCheck(model.name, model.revision.commit_sha, cand.method, cand.signer,
                          len(statement.resources), statement.root_digest, deep, hashed, nbytes)


def _check_blobs(reg: Registry, label: str, statement: Statement, files: dict[str, FileDigests]) -> tuple[int, int]:
    """Re-hash every signed file's blob with the signature's hash and compare with what was signed."""
    problems: list[str] = []
    nbytes = 0
    for r in statement.resources:
        path = reg.store.path_for(files[r.name].sha256)
        try:
            got = sha256_file(path) if statement.hash_type == "sha256" else blake3_file(path)
            nbytes += path.stat().st_size
        except FileNotFoundError:
            problems.append(f"{r.name}: its blob {files[r.name].sha256} is missing from the store")
            continue
        if got != r.digest:
            problems.append(f"{r.name}: the stored bytes hash to {statement.hash_type} {got}, the signature says "
                            f"{r.digest} (run `registry verify --deep`)")
    if problems:
        raise _mismatch(f"{label} (--deep)", "the bytes in the store", problems)
    return len(statement.resources), nbytes


# ---- add DIR --signature ----------------------------------------------------------------------------------

def add_signed(reg: Registry, path: Path | str, name: str, signature: Path | str, *, key_path: Path | str | None = None,
               keyless: SigstoreSigner | None = None, revision: str | None = None,
               manifest_file: Path | None = None, progress: Progress | None = None,
               register: bool | None = False, device: str = "auto") -> SignedAdd:
    """``registry add`` of a folder signed by someone else: the signature is checked (signer, then every file of the
    model as the registry records it) before anything is stored, and recorded with the model."""
    from registry.services.add import add_folder

    if (key_path is None) == (keyless is None):
        raise UsageError("--signature needs the signer: --key PUBLIC.pem, or --identity, --issuer and "
                         "--trust-config for a Sigstore keyless signature")
    key = load_public_key(key_path) if key_path is not None else None
    label = str(signature)
    cand = Candidate("key" if key else "sigstore", key.fingerprint if key else keyless.name,  # type: ignore[union-attr]
                     read_signature_file(signature), label)
    try:
        statement = open_signature(cand, key, keyless, label)
    except SignatureError as exc:
        reg.log_now("add.refused", name, path=str(path), signature=label, message=exc.message)
        raise

    def approve(resolved: ResolvedManifest) -> None:
        problems = oms.compare(statement, resolved_own_files(resolved), exact=True)
        if problems:
            exc = _mismatch(label, f"{name} as the registry records it (its manifest: {resolved.source})", problems,
                            "a deployed copy holds exactly the model's files, so a signature must list them and "
                            "nothing else: sign again with `model_signing sign key --ignore-paths ...` for files the "
                            "model does not need, or pass a --manifest that keeps them")
            raise exc  # the ingest pipeline records the one add.refused event, with these problems

    added = add_folder(reg, path, name, revision=revision, manifest_file=manifest_file, progress=progress,
                       approve=approve)  # registration waits until the signature is recorded with the model
    with reg.catalog.session() as session:
        rev = find_revision(session, name, added.commit)
        assert rev is not None  # add_folder has just recorded it
        insert_signature(session, rev, cand, statement, reg.settings.actor)
        reg.log(session, "signature.add", name, commit=added.commit, method=cand.method, signer=cand.signer,
                files=len(statement.resources), root_digest=statement.root_digest, source=label)
    registration = register_after_ingest(reg, name, added.commit, register=register, device=device)
    added = dataclasses.replace(added, state=registration.state, registration=registration)
    return SignedAdd(added, cand.method, cand.signer, len(statement.resources), statement.root_digest)

