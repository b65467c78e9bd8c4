"""The signature column of ``registry audit``: OpenSSF model signatures (docs/signing.md) of deployed copies.

- ``catalog_signatures(session, model_ids)``: what the catalog holds, in one query for many models (the fleet view
  stays one round trip): a model whose revision has a ``signatures`` row is expected to be signed.
- ``check_copy_signature(copy_root, files, catalog)``: with ``audit --verify``, the copy's ``model.sig`` (deploy
  writes one per folder: the ``dir`` folder, or each repo's snapshot in an HF cache) against the catalog's rows:
  ``signed`` when its bytes are one of the revision's signatures (each was verified when it was recorded, and
  ``--verify`` has just proven the copy's files equal to the catalog's), ``bad-signature`` when it is there but
  none of them, ``unsigned`` when absent. Only when ``expected`` is true do ``unsigned`` and ``bad-signature``
  become the row's state (a finding, exit 1); a model that was never signed stays ``ok``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from registry.catalog.models import Model, Signature
from registry.signing.oms import SIGNATURE_FILE

SIGNED, UNSIGNED, BAD_SIGNATURE = "signed", "unsigned", "bad-signature"
# files a signed deployment carries beside the model's own; the drift check does not call them extra
SIGNATURE_FILES = frozenset({SIGNATURE_FILE})


@dataclass(frozen=True)
class SignatureCheck:
    state: str              # signed | unsigned | bad-signature
    expected: bool = False  # the catalog holds a signature for this model
    detail: str = ""
    bundles: tuple[str, ...] = ()  # the catalog's model.sig texts for the model's revision

    @property
    def finding(self) -> str | None:
        """The row state this check imposes, if any."""
        return self.state if self.expected and self.state in (UNSIGNED, BAD_SIGNATURE) else None


NO_SIGNATURE = SignatureCheck(UNSIGNED)


def catalog_signatures(session: Session, model_ids: Iterable[int]) -> dict[int, SignatureCheck]:
    """Catalog-side signature status per model id; models absent from the result are unsigned."""
    ids = list(model_ids)
    if not ids:
        return {}
    found: dict[int, list[str]] = {}
    for model_id, bundle in session.execute(
            select(Model.id, Signature.bundle).join(Signature, Signature.revision_id == Model.revision_id)
            .where(Model.id.in_(ids))):
        found.setdefault(model_id, []).append(bundle)
    return {mid: SignatureCheck(SIGNED, expected=True, bundles=tuple(bundles)) for mid, bundles in found.items()}


def check_copy_signature(copy_root: Path, files: Iterable[str], catalog: SignatureCheck | None) -> SignatureCheck:
    """The deployed copy's signature, checked on disk (``audit --verify``)."""
    expected = catalog is not None and catalog.expected
    sig = copy_root / SIGNATURE_FILE
    if not sig.exists():  # (a dangling link too)
        return SignatureCheck(UNSIGNED, expected, f"{SIGNATURE_FILE} is not in the copy" if expected else "")
    try:
        text = sig.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        return SignatureCheck(BAD_SIGNATURE, expected, f"{SIGNATURE_FILE} cannot be read: {exc}")
    if catalog is not None and text in catalog.bundles:
        return SignatureCheck(SIGNED, expected)
    return SignatureCheck(BAD_SIGNATURE, expected,
                          f"{SIGNATURE_FILE} is none of the signatures the catalog holds for this revision"
                          if expected else f"{SIGNATURE_FILE} is there, but the catalog holds no signature of the model")
