"""ECDSA keys as ``model_signing`` uses them: PEM files, curves P-256 / P-384 / P-521, each signing with the
hash of its size (SHA-256 / SHA-384 / SHA-512). A public key is named by its fingerprint: the sha256 of its
PEM SubjectPublicKeyInfo bytes, which is what model_signing writes as the bundle's ``publicKey.hint``."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from registry.errors import UsageError

CURVES = {"secp256r1": hashes.SHA256, "secp384r1": hashes.SHA384, "secp521r1": hashes.SHA512}
MAX_KEY_FILE = 64 * 1024


def _pem_spki(key: ec.EllipticCurvePublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def fingerprint_of(key: ec.EllipticCurvePublicKey) -> str:
    return hashlib.sha256(_pem_spki(key)).hexdigest()


def _algorithm(key: ec.EllipticCurvePublicKey | ec.EllipticCurvePrivateKey) -> ec.ECDSA:
    return ec.ECDSA(CURVES[key.curve.name]())


@dataclass(frozen=True)
class PublicKey:
    key: ec.EllipticCurvePublicKey
    fingerprint: str
    label: str  # where it came from, for messages

    @property
    def pem(self) -> bytes:
        return _pem_spki(self.key)

    def verify(self, signature: bytes, data: bytes) -> bool:
        try:
            self.key.verify(signature, data, _algorithm(self.key))
        except InvalidSignature:
            return False
        return True

    def describe(self) -> str:
        return f"{self.fingerprint[:16]} ({self.label})"


@dataclass(frozen=True)
class PrivateKey:
    key: ec.EllipticCurvePrivateKey
    label: str

    @property
    def public(self) -> PublicKey:
        pub = self.key.public_key()
        return PublicKey(pub, fingerprint_of(pub), self.label)

    def sign(self, data: bytes) -> bytes:
        """A DER-encoded ECDSA signature, as model_signing writes it."""
        return self.key.sign(data, _algorithm(self.key))


def _read(path: Path | str, what: str) -> tuple[Path, bytes]:
    path = Path(path).expanduser()
    try:
        if not path.is_file():
            raise UsageError(f"{what} {path}: no such file", details={"key": str(path)})
        if path.stat().st_size > MAX_KEY_FILE:
            raise UsageError(f"{what} {path}: {path.stat().st_size} bytes is too large for a PEM key",
                             details={"key": str(path)})
        return path, path.read_bytes()
    except OSError as exc:
        raise UsageError(f"{what} {path}: cannot be read: {exc}", details={"key": str(path)}) from exc


def _check_curve(key: object, path: Path, what: str) -> None:
    if not isinstance(key, (ec.EllipticCurvePublicKey, ec.EllipticCurvePrivateKey)):
        raise UsageError(f"{what} {path}: a {type(key).__name__.lstrip('_')}, not an ECDSA key; model signing uses "
                         "ECDSA keys (make one with: openssl ecparam -name prime256v1 -genkey -noout -out key.pem)",
                         details={"key": str(path)})
    if key.curve.name not in CURVES:
        raise UsageError(f"{what} {path}: curve {key.curve.name} is not one model_signing accepts "
                         f"({', '.join(CURVES)})", details={"key": str(path)})


def public_key_from_pem(data: bytes, label: str) -> PublicKey:
    """A public key from PEM bytes (SubjectPublicKeyInfo); ValueError when it is not one we accept."""
    key = serialization.load_pem_public_key(data)
    if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name not in CURVES:
        raise ValueError("not an ECDSA P-256/P-384/P-521 public key")
    return PublicKey(key, fingerprint_of(key), label)


def load_public_key(path: Path | str) -> PublicKey:
    path, data = _read(path, "public key")
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        hint = " (that is a private key: pass its public half, `openssl ec -in KEY -pubout`)" \
            if b"PRIVATE KEY" in data else ""
        raise UsageError(f"public key {path}: not a PEM public key{hint}", details={"key": str(path)}) from exc
    _check_curve(key, path, "public key")
    return PublicKey(key, fingerprint_of(key), str(path))  # type: ignore[arg-type]


def load_private_key(path: Path | str, password: bytes | None = None) -> PrivateKey:
    path, data = _read(path, "private key")
    try:
        key = serialization.load_pem_private_key(data, password)
    except TypeError as exc:
        raise UsageError(f"private key {path}: it is encrypted; pass its password (REGISTRY_KEY_PASSWORD) "
                         "or decrypt it first", details={"key": str(path)}) from exc
    except (ValueError, UnsupportedAlgorithm) as exc:
        hint = " (that is a public key: signing needs the private one)" if b"PUBLIC KEY" in data else ""
        raise UsageError(f"private key {path}: not a PEM private key, or a wrong password{hint}",
                         details={"key": str(path)}) from exc
    _check_curve(key, path, "private key")
    return PrivateKey(key, str(path))  # type: ignore[arg-type]
