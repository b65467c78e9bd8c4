"""Checking Sigstore keyless bundles made elsewhere, offline, with sigstore-python (the optional ``sigstore`` extra).

Keyless *signing* needs the network (an OIDC login, Fulcio for the certificate, Rekor for the log entry) and is
out of scope. *Verifying* such a bundle needs none of it: the bundle carries the short-lived certificate, the
Rekor entry with its inclusion proof and signed checkpoint, and the caller carries a ``ClientTrustConfig`` JSON
(Fulcio roots and Rekor/CT keys). This is what ``model_signing verify sigstore --trust_config FILE`` does
(model_signing ``_signing/sign_sigstore.py``: ``Verifier(trusted_root=ClientTrustConfig.from_json(...).trusted_root)``
then ``verify_dsse(bundle, policy.Identity(identity, issuer))``).
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

from registry.errors import MissingExtra, SignatureError, UsageError
from registry.signing.trust import SigstoreSigner


def _sigstore() -> tuple[Any, Any, Any, Any]:
    try:
        from sigstore.errors import Error
        from sigstore.models import Bundle, ClientTrustConfig
        from sigstore.verify import Verifier, policy
    except ImportError as exc:
        raise MissingExtra(
            "checking Sigstore keyless signatures needs the optional package 'sigstore', which is not installed; "
            "install it with: pip install 'registry[sigstore]'", details={"module": "sigstore", "extra": "sigstore"},
        ) from exc
    return Bundle, ClientTrustConfig, Verifier, (policy, Error)


@functools.lru_cache(maxsize=16)
def _verifier(trust_config: Path, mtime_ns: int) -> Any:
    _, client_trust_config, verifier, _ = _sigstore()
    try:
        config = client_trust_config.from_json(trust_config.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise UsageError(f"trust config {trust_config}: not a Sigstore ClientTrustConfig JSON ({exc})",
                         details={"trust_config": str(trust_config)}) from exc
    return verifier(trusted_root=config.trusted_root)


def verify_keyless(data: bytes, signer: SigstoreSigner, label: str) -> tuple[str, bytes]:
    """(payload type, payload) of a Sigstore bundle that ``signer`` made; SignatureError otherwise."""
    bundle_cls, _, _, (policy, sigstore_error) = _sigstore()
    path = signer.trust_config
    try:
        verifier = _verifier(path, path.stat().st_mtime_ns)
    except OSError as exc:
        raise UsageError(f"trust config {path}: cannot be read: {exc}") from exc
    try:
        bundle = bundle_cls.from_json(data)
    except (sigstore_error, ValueError, TypeError) as exc:
        raise SignatureError(f"{label}: not a valid Sigstore bundle ({exc})", details={"signature": label}) from exc
    try:
        payload_type, payload = verifier.verify_dsse(bundle, policy.Identity(identity=signer.identity,
                                                                             issuer=signer.issuer))
    except (sigstore_error, ValueError) as exc:
        raise SignatureError(f"{label}: not signed by {signer.name} under {path}: {exc}",
                             details={"signature": label, "signer": signer.name}) from exc
    return payload_type, payload
