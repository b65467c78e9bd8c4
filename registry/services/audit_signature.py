"""The signature column of ``registry audit``: a small hook for OpenSSF model signatures.

Signatures are being added on their own (services/signing.py, a ``signatures`` catalog table, ``deploy``
writing ``model.sig`` into each copy). Until that lands there is no signature data anywhere, so every copy
reads ``unsigned`` and nothing here changes a row's state. Two functions are the whole interface:

- ``catalog_signatures(session, model_ids)``: what the catalog says, in one query for many models (the fleet view
  must stay one round trip). Wire it to the ``signatures`` table: a model with a signature row gets
  ``SignatureCheck("signed", expected=True)``.
- ``check_copy_signature(copy_root, files, catalog)``: with ``audit --verify``, check the copy's ``model.sig``
  (``model_signing`` verify, offline) against the catalog's: ``signed``, ``bad-signature`` (present and failing),
  or ``unsigned`` (absent). Only when ``expected`` is true do ``unsigned`` and ``bad-signature`` become the row's
  state (a finding, exit 1); a model that was never signed stays ``ok``.

Wiring it on main (signing merged as issue 13): ``catalog_signatures`` maps model ids to their revision ids and
asks ``services.signing.signature_rows(session, revision_ids)``; a revision with a row is ``signed``/expected.
``check_copy_signature`` reads ``copy_root / "model.sig"`` (deploy writes one per folder: the ``dir`` folder, or
each repo's snapshot in an HF cache, as ``registry.signing.oms.SIGNATURE_FILE``): absent -> ``unsigned``; bytes
equal to one of the revision's ``Signature.bundle`` rows and (under a trust policy) ``TrustGate.prove`` over the
copy's files, which ``--verify`` has just proven equal to the catalog's -> ``signed``; anything else ->
``bad-signature`` with the reason in ``detail``. ``undeploy`` already removes the ``model.sig`` deploy wrote.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.orm import Session

SIGNED, UNSIGNED, BAD_SIGNATURE = "signed", "unsigned", "bad-signature"
# files a signed deployment carries beside the model's own; the drift check does not call them extra
SIGNATURE_FILES = frozenset({"model.sig"})


@dataclass(frozen=True)
class SignatureCheck:
    state: str              # signed | unsigned | bad-signature
    expected: bool = False  # the catalog holds a signature for this model
    detail: str = ""

    @property
    def finding(self) -> str | None:
        """The row state this check imposes, if any."""
        return self.state if self.expected and self.state in (UNSIGNED, BAD_SIGNATURE) else None


NO_SIGNATURE = SignatureCheck(UNSIGNED)


def catalog_signatures(session: Session, model_ids: Iterable[int]) -> dict[int, SignatureCheck]:
    """Catalog-side signature status per model id; models absent from the result are unsigned."""
    return {}


def check_copy_signature(copy_root: Path, files: Iterable[str], catalog: SignatureCheck | None) -> SignatureCheck:
    """The deployed copy's signature, checked on disk (``audit --verify``)."""
    return catalog or NO_SIGNATURE
