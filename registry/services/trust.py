"""The trust policy in force (``REGISTRY_TRUST`` / ``--trust FILE``): ``import``, ``pull``, ``deploy`` and ``serve``
refuse a model unless every file they would carry is covered by a valid signature from a signer the policy trusts
for that file's repo (the model's own files, and a base's files, each by a signature of their own revision).

Also here: which signature a deployed folder or the mirror publishes as ``model.sig``.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from registry.catalog.models import Blob, Component, File, Model, Signature
from registry.config import Settings
from registry.errors import SignatureError
from registry.services.context import Registry
from registry.services.signing import Candidate, candidate_of, model_groups, open_keyless, open_with_key, short, \
    signature_rows, write_atomic
from registry.signing import oms
from registry.signing.oms import FileDigests, Statement
from registry.signing.trust import TrustPolicy, load_policy


@dataclass(frozen=True)
class Proof:
    candidate: Candidate
    statement: Statement
    signer: str       # the trusted key's fingerprint, or the Sigstore "identity (issuer)"
    described: str    # the same, for messages


class TrustGate:
    """A loaded policy and what it has proven. Thread-safe; what it caches is immutable: a catalog row's verdict
    under this policy (rows are never updated, and their ids never reused), and a model's verdict for one set of
    rows and one root digest."""

    def __init__(self, policy: TrustPolicy) -> None:
        self.policy = policy
        self._rows: dict[int, tuple[Statement, str, str] | str] = {}
        self._models: dict[tuple[int, str, tuple[int, ...]], bool] = {}
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: Settings) -> "TrustGate | None":
        return cls(load_policy(settings.trust_file)) if settings.trust_file is not None else None

    # ---- one signature --------------------------------------------------------------------------------
    def _open(self, repo_id: str, cand: Candidate) -> tuple[Statement, str, str] | str:
        """(statement, signer, its description) if a signer trusted for ``repo_id`` made ``cand``; else why not."""
        if cand.row_id is not None:
            with self._lock:
                hit = self._rows.get(cand.row_id)
            if hit is not None:
                return hit
        signer_name = short(cand.signer) or "(unnamed)"
        verdict: tuple[Statement, str, str] | str = f"{cand.origin}: its signer {signer_name} is not trusted for " \
                                                    f"{repo_id}"
        # A candidate that does not name its signer (an old bundle without a key hint) is tried with each one.
        if cand.method == "key":
            for key in self.policy.keys_for(repo_id):
                if cand.signer in ("", key.fingerprint):
                    try:
                        verdict = (open_with_key(cand, key, cand.origin), key.fingerprint, key.describe())
                        break
                    except SignatureError as exc:
                        verdict = exc.message
        else:
            for signer in self.policy.sigstore_for(repo_id):
                if cand.signer in ("", signer.name):
                    try:
                        verdict = (open_keyless(cand, signer, cand.origin), signer.name, signer.name)
                        break
                    except SignatureError as exc:
                        verdict = exc.message
        if cand.row_id is not None:
            with self._lock:
                self._rows[cand.row_id] = verdict
        return verdict

    def prove(self, repo_id: str, files: dict[str, FileDigests], candidates: Sequence[Candidate], *,
              exact: bool = False) -> Proof | list[str]:
        """The first candidate a trusted signer made that covers ``files`` (or lists exactly them); else the
        reasons each candidate failed."""
        reasons: list[str] = []
        for cand in candidates:
            opened = self._open(repo_id, cand)
            if isinstance(opened, str):
                reasons.append(opened)
                continue
            statement, signer, described = opened
            problems = oms.compare(statement, files, exact=exact)
            if problems:
                reasons.append(f"{cand.origin} (by {described}) does not match: " + "; ".join(problems))
                continue
            return Proof(cand, statement, signer, described)
        return reasons

    # ---- a model --------------------------------------------------------------------------------------
    def failures(self, session: Session, model: Model, extra: dict[int, list[Candidate]] | None = None) -> list[str]:
        """Why ``model`` is not trusted (empty: it is). ``extra`` adds candidates per revision id (not yet rows)."""
        problems: list[str] = []
        groups = model_groups(model)
        rows = signature_rows(session, [g.revision_id for g in groups])
        for g in groups:
            if not g.files:
                continue
            cands = [candidate_of(r) for r in rows if r.revision_id == g.revision_id] + list((extra or {}).get(
                g.revision_id, []))
            proof = self.prove(g.repo, g.files, cands)
            if isinstance(proof, list):
                problems.append(f"{g.repo}@{g.commit[:12]}: " + ("; ".join(proof) if proof else "not signed")
                                + f" (trusted: {self.policy.describe(g.repo)})")
        return problems

    def require(self, session: Session, model: Model, *, doing: str) -> None:
        problems = self.failures(session, model)
        if problems:
            raise untrusted(model.name, model.revision.commit_sha, doing, self.policy, problems)

    def trusted_model_ids(self, session: Session, model_ids: Iterable[int]) -> set[int]:
        """The models among ``model_ids`` the policy trusts (the mirror asks on every request: cached)."""
        ids = set(model_ids)
        if not ids:
            return set()
        sig_rows = session.execute(
            select(Component.model_id, Signature.id).join(Signature, Signature.revision_id == Component.revision_id)
            .where(Component.model_id.in_(ids))).all()
        by_model: dict[int, set[int]] = {}
        for mid, sid in sig_rows:
            by_model.setdefault(mid, set()).add(sid)
        digests = dict(session.execute(select(Model.id, Model.root_digest).where(Model.id.in_(ids))).all())
        trusted = set()
        for mid in ids:
            if mid not in by_model:
                continue  # no signature at all
            key = (mid, digests[mid], tuple(sorted(by_model[mid])))
            with self._lock:
                verdict = self._models.get(key)
            if verdict is None:
                verdict = not self.failures(session, session.get(Model, mid))
                with self._lock:
                    self._models[key] = verdict
            if verdict:
                trusted.add(mid)
        return trusted


def untrusted(name: str, commit: str, doing: str, policy: TrustPolicy, problems: Sequence[str]) -> SignatureError:
    return SignatureError(
        f"{name}@{commit[:12]} is refused ({doing}): the trust policy {policy.source} requires a valid signature "
        "from a trusted signer:\n  " + "\n  ".join(problems)
        + f"\nsign it with `registry sign {name} --key PRIVATE.pem` using a key the policy trusts",
        details={"name": name, "commit": commit, "trust": str(policy.source), "problems": list(problems)})


def require_trusted(reg: Registry, session: Session, model: Model, *, doing: str) -> None:
    """Refuse ``model`` if a trust policy is in force and does not trust it; a no-op without a policy."""
    gate = TrustGate.from_settings(reg.settings)
    if gate is not None:
        gate.require(session, model, doing=doing)


# ---- model.sig for deployed folders and the mirror -------------------------------------------------------------

def publishable(session: Session, revision_id: int, files: dict[str, FileDigests] | None, gate: TrustGate | None,
                repo_id: str, parsed: dict[int, Statement | None] | None = None) -> bytes | None:
    """The ``model.sig`` to put beside one revision's ``files`` (None: all of the revision's files): the newest
    signature that lists exactly them (and, with a policy in force, made by a trusted signer); None when there is
    none. ``parsed`` caches statements by row id."""
    rows = signature_rows(session, [revision_id])
    if not rows:
        return None
    if files is None:
        files = revision_digests(session, revision_id)
    if oms.SIGNATURE_FILE in files:
        return None  # the repo has a file of that name: never shadow it
    for row in rows:
        cand = candidate_of(row)
        if gate is not None:
            if not isinstance(gate.prove(repo_id, files, [cand], exact=True), list):
                return cand.bundle
            continue
        statement = parsed.get(row.id) if parsed is not None else None
        if statement is None:
            try:
                bundle = oms.parse_bundle(cand.bundle, cand.origin)
                statement = oms.parse_statement(bundle.payload_type, bundle.payload, cand.origin)
            except SignatureError:
                continue
            if parsed is not None:
                parsed[row.id] = statement
        if not oms.compare(statement, files, exact=True):
            return cand.bundle
    return None


def revision_digests(session: Session, revision_id: int) -> dict[str, FileDigests]:
    rows = session.execute(select(File.path, File.blob_sha256, Blob.blake3).join(Blob, Blob.sha256 == File.blob_sha256)
                           .where(File.revision_id == revision_id))
    return {path: FileDigests(sha, b3) for path, sha, b3 in rows}


def signature_file(reg: Registry, data: bytes) -> Path:
    """A read-only file holding ``data``, named by its sha256 under ``$REGISTRY_HOME/signatures`` (the mirror sends
    files, not strings: bytes then stream like any blob's, Range included)."""
    path = reg.settings.home / "signatures" / f"{hashlib.sha256(data).hexdigest()}.sig"
    if not path.is_file():
        write_atomic(path, data)
        path.chmod(0o444)
    return path


def deploy_signatures(reg: Registry, session: Session, model: Model) -> dict[tuple[str, str], bytes]:
    """The model.sig for each (repo, commit) folder a deployment of ``model`` writes; refuses the model when a trust
    policy is in force and does not trust it."""
    gate = TrustGate.from_settings(reg.settings)
    if gate is not None:
        gate.require(session, model, doing="deploy")
    out: dict[tuple[str, str], bytes] = {}
    for g in model_groups(model):
        data = publishable(session, g.revision_id, g.files, gate, g.repo)
        if data is not None:
            out[(g.repo, g.commit)] = data
    return out
