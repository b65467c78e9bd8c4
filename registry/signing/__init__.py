"""Model signatures in the OpenSSF model-signing (OMS) v1.0 format, made and checked offline. A leaf: no catalog,
no store. ``oms`` is the format, ``keys`` the ECDSA keys, ``trust`` the trust policy, ``keyless`` the optional check
of Sigstore keyless bundles."""

from registry.signing.keys import PrivateKey, PublicKey, load_private_key, load_public_key
from registry.signing.oms import SIGNATURE_FILE, Bundle, FileDigests, Statement
from registry.signing.trust import SigstoreSigner, TrustPolicy, load_policy

__all__ = ["SIGNATURE_FILE", "Bundle", "FileDigests", "PrivateKey", "PublicKey", "SigstoreSigner", "Statement",
           "TrustPolicy", "load_policy", "load_private_key", "load_public_key"]
