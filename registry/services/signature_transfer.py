"""Signatures that travel: in export bundles (``bundle.json``'s ``signatures``) and from an upstream repo's
``model.sig`` during ``pull`` (the registry's own mirror serves one for signed models).

Import checks every carried signature against the bundle's own digests before anything is recorded (a signature
swapped for another model's lists other files and is refused, naming it); the cryptographic check needs the
signer's key, so it runs under a trust policy (and `registry verify-signature --key` later). Pull looks at an
upstream ``model.sig`` only under a trust policy, where it is the way a trusted signature arrives.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from registry.catalog.models import Repo, Revision
from registry.errors import SignatureError, UpstreamError
from registry.manifest.resolve import ResolvedManifest
from registry.services.context import Registry
from registry.services.signing import Candidate, candidate_of, insert_signature, short, signature_rows
from registry.services.trust import TrustGate, untrusted
from registry.signing import oms
from registry.signing.oms import SIGNATURE_FILE, FileDigests, Statement

if TYPE_CHECKING:
    from registry.fetch.hub import HubClient, RemoteRepo


@dataclass(frozen=True)
class Pending:
    """A signature proven (or, without a policy, found consistent) and not yet in the catalog."""

    repo: str
    commit: str
    candidate: Candidate
    statement: Statement


def _revision(session: Session, repo: str, commit: str) -> Revision | None:
    return session.scalars(select(Revision).join(Repo, Repo.id == Revision.repo_id)
                           .where(Repo.repo_id == repo, Revision.commit_sha == commit)).one_or_none()


def record_signatures(session: Session, pending: Sequence[Pending], actor: str) -> int:
    """Insert what is not there yet (a signer's signature already in the catalog is kept as it is)."""
    added = 0
    for p in pending:
        rev = _revision(session, p.repo, p.commit)
        assert rev is not None  # recorded in this transaction, or before it
        if any(r.signer == p.candidate.signer for r in signature_rows(session, [rev.id])):
            continue
        insert_signature(session, rev, p.candidate, p.statement, actor)
        added += 1
    return added


def _groups(manifest: ResolvedManifest) -> dict[tuple[str, str], dict[str, FileDigests]]:
    groups: dict[tuple[str, str], dict[str, FileDigests]] = {}
    for c in manifest.components:
        groups.setdefault((c.repo, c.commit), {}).update({f.path: FileDigests(f.sha256, f.blake3) for f in c.files})
    return groups


def external_candidate(data: bytes, origin: str) -> Candidate:
    """Bytes from outside the catalog, named by the signer their bundle names (a key's hint; '' when unknown)."""
    bundle = oms.parse_bundle(data, origin)
    if bundle.method == "certificate":
        raise SignatureError(f"{origin}: signed with a certificate chain, which the registry does not check; "
                             "sign with a key (`registry sign`)", details={"signature": origin})
    return Candidate("key" if bundle.method == "key" else "sigstore", bundle.hint or "", data, origin)


# ---- bundles ----------------------------------------------------------------------------------------------

def bundle_signatures(reg: Registry, models: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Every signature of every (repo, commit) the exported models use, for ``bundle.json``."""
    pairs = sorted({(s["repo"], s["commit"]) for m in models for s in m["sources"]})
    out: list[dict[str, Any]] = []
    with reg.catalog.reader() as session:
        for repo, commit in pairs:
            rev = _revision(session, repo, commit)
            for row in signature_rows(session, [rev.id] if rev is not None else []):
                out.append({"repo": repo, "commit": commit, "method": row.method, "signer": row.signer,
                            "root_digest": row.root_digest, "bundle": row.bundle})
    return out


def check_bundle_signatures(reg: Registry, data: Mapping[str, Any], models: Sequence[Mapping[str, Any]], *,
                            origin: str = "bundle.json", doing: str = "import; nothing was imported") -> list[Pending]:
    """The bundle's signatures, each checked against the digests the bundle itself records; with a trust policy,
    every model must also be covered by trusted signatures (carried, or already in the catalog). ``origin`` names
    where the records came from (bundle.json, an OCI artifact's record) and ``doing`` the refusal's outcome."""
    def _refuse(entry: str, why: str) -> SignatureError:
        return SignatureError(f"{origin}: {entry}: {why}; {doing.split('; ', 1)[-1]}", details={"entry": entry})

    raw = data.get("signatures", [])
    if not isinstance(raw, list):
        raise _refuse("signatures", "is not a list")
    manifests = {(m["name"], m["commit"]): ResolvedManifest.from_dict(m["manifest"]) for m in models}
    files: dict[tuple[str, str], dict[str, FileDigests]] = {}
    for manifest in manifests.values():
        for pair, group in _groups(manifest).items():
            files.setdefault(pair, {}).update(group)
    pending: list[Pending] = []
    by_pair: dict[tuple[str, str], list[Candidate]] = {}
    for i, entry in enumerate(raw):
        if not isinstance(entry, dict) or not all(isinstance(entry.get(k), str) for k in
                                                  ("repo", "commit", "method", "signer", "bundle")):
            raise _refuse(f"signatures[{i}]", "needs repo, commit, method, signer and bundle strings")
        pair = (entry["repo"], entry["commit"])
        where = f"the signature by {short(entry['signer'])} of {pair[0]}@{pair[1][:12]}"
        if pair not in files:
            raise _refuse(f"signatures[{i}]", f"{where} is for a revision no bundled model uses")
        if entry["method"] not in ("key", "sigstore"):
            raise _refuse(f"signatures[{i}]", f"{where}: unknown method {entry['method']!r}")
        signer_ok = (len(entry["signer"]) == 64 and set(entry["signer"]) <= set("0123456789abcdef")
                     if entry["method"] == "key" else 0 < len(entry["signer"]) <= 500)
        if not signer_ok:
            raise _refuse(f"signatures[{i}]", f"{where}: malformed signer")
        try:
            cand = external_candidate(entry["bundle"].encode(), f"{origin}: {where}")
            if cand.method != entry["method"] or (cand.method == "key" and cand.signer not in ("", entry["signer"])):
                raise SignatureError(f"{origin}: {where}: its model.sig names another signer "
                                     f"({short(cand.signer) or cand.method}) (tampered)")
            statement = oms.parse_statement(*_payload(cand), cand.origin)
        except SignatureError as exc:
            raise _refuse(f"signatures[{i}]", exc.message) from exc
        problems = oms.compare(statement, files[pair], exact=False)
        if problems:
            raise _refuse(f"signatures[{i}]", f"{where} is not over these files (swapped for another model's?): "
                                              + "; ".join(problems))
        cand = Candidate(entry["method"], entry["signer"], cand.bundle, cand.origin)
        by_pair.setdefault(pair, []).append(cand)
        pending.append(Pending(pair[0], pair[1], cand, statement))
    gate = TrustGate.from_settings(reg.settings)
    if gate is not None:
        with reg.catalog.reader() as session:
            for (name, commit), manifest in manifests.items():
                problems = []
                for (repo, rev_commit), group in _groups(manifest).items():
                    if not group:
                        continue
                    rev = _revision(session, repo, rev_commit)
                    cands = by_pair.get((repo, rev_commit), []) + [candidate_of(r) for r in signature_rows(
                        session, [rev.id] if rev is not None else [])]
                    proof = gate.prove(repo, group, cands)
                    if isinstance(proof, list):
                        problems.append(f"{repo}@{rev_commit[:12]}: " + ("; ".join(proof) or "not signed")
                                        + f" (trusted: {gate.policy.describe(repo)})")
                if problems:
                    raise untrusted(name, commit, doing, gate.policy, problems)
    return pending


def _payload(cand: Candidate) -> tuple[str, bytes]:
    bundle = oms.parse_bundle(cand.bundle, cand.origin)
    return bundle.payload_type, bundle.payload


# ---- pull ---------------------------------------------------------------------------------------------------

class _Memory:
    """A download sink that keeps the bytes (a model.sig is small)."""

    def __init__(self) -> None:
        self.data = bytearray()

    @property
    def offset(self) -> int:
        return len(self.data)

    def write(self, chunk: bytes) -> None:
        self.data += chunk
        if len(self.data) > oms.MAX_BUNDLE:
            raise UpstreamError(f"the upstream {SIGNATURE_FILE} is larger than {oms.MAX_BUNDLE} bytes")

    def restart(self) -> None:
        self.data.clear()


def pulled_signatures(reg: Registry, client: HubClient, repos: Mapping[str, RemoteRepo], resolved: ResolvedManifest
                      ) -> list[Pending]:
    """Under a trust policy: the trusted signatures that cover a pulled model (from the catalog, or the upstream
    repo's model.sig, to be recorded with the model); refuses the pull when there are none. [] without a policy."""
    gate = TrustGate.from_settings(reg.settings)
    if gate is None:
        return []
    pending: list[Pending] = []
    problems: list[str] = []
    with reg.catalog.reader() as session:
        for (repo, commit), group in _groups(resolved).items():
            if not group:
                continue
            rev = _revision(session, repo, commit)
            cands = [candidate_of(r) for r in signature_rows(session, [rev.id] if rev is not None else [])]
            remote = repos.get(repo)
            if remote is not None and remote.commit == commit and SIGNATURE_FILE in remote.files \
                    and SIGNATURE_FILE not in group:
                origin = f"{client.endpoint}: {repo}@{commit[:12]}/{SIGNATURE_FILE}"
                sink = _Memory()
                client.download(repo, commit, remote.files[SIGNATURE_FILE], sink)
                try:
                    cands.append(external_candidate(bytes(sink.data), origin))
                except SignatureError as exc:
                    problems.append(exc.message)
            proof = gate.prove(repo, group, cands)
            if isinstance(proof, list):
                problems.append(f"{repo}@{commit[:12]}: " + ("; ".join(proof) or "not signed")
                                + f" (trusted: {gate.policy.describe(repo)})")
            elif proof.candidate.row_id is None:
                cand = proof.candidate
                pending.append(Pending(repo, commit, Candidate(cand.method, proof.signer, cand.bundle, cand.origin),
                                       proof.statement))
    if problems:
        raise untrusted(resolved.name, next(c.commit for c in resolved.components if c.repo == resolved.name),
                        "pull; nothing was recorded", gate.policy, problems)
    return pending


def record_pulled(reg: Registry, name: str, pending: Sequence[Pending]) -> None:
    if not pending:
        return
    with reg.catalog.session() as session:
        added = record_signatures(session, pending, reg.settings.actor)
        reg.log(session, "signature.pull", name, signatures=[f"{p.repo}@{p.commit[:12]} by {short(p.candidate.signer)}"
                                                             for p in pending], added=added)
