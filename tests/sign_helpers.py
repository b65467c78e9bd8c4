"""Helpers for the signing tests: ECDSA key pairs as PEM files, the real model_signing CLI in a subprocess,
and counts of what the catalog holds."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import func, select

from registry.catalog.models import Model, Signature
from registry.signing.keys import fingerprint_of


@dataclass(frozen=True)
class KeyPair:
    private: Path
    public: Path
    fingerprint: str


def make_keys(folder: Path, name: str = "key", curve: ec.EllipticCurve | None = None) -> KeyPair:
    """A fresh key pair written the way `openssl ecparam -genkey` / `openssl ec -pubout` write it."""
    folder.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(curve or ec.SECP256R1())
    private, public = folder / f"{name}.pem", folder / f"{name}.pub"
    private.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                                          serialization.NoEncryption()))
    public.write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM,
                                                     serialization.PublicFormat.SubjectPublicKeyInfo))
    return KeyPair(private, public, fingerprint_of(key.public_key()))


def model_signing(*args: str | Path) -> subprocess.CompletedProcess:
    """The real `model_signing` CLI (PyPI model-signing), as a user runs it."""
    return subprocess.run([sys.executable, "-m", "model_signing", *map(str, args)], capture_output=True, text=True,
                          timeout=300)


def ms_sign(folder: Path, keys: KeyPair, signature: Path | None = None, *extra: str) -> Path:
    signature = signature or folder / "model.sig"
    proc = model_signing("sign", "key", folder, "--signature", signature, "--private_key", keys.private, *extra)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return signature


def ms_verify(folder: Path, keys: KeyPair, signature: Path | None = None, *extra: str) -> subprocess.CompletedProcess:
    return model_signing("verify", "key", folder, "--signature", signature or folder / "model.sig",
                         "--public_key", keys.public, *extra)


def signature_count(reg) -> int:
    with reg.catalog.reader() as session:
        return session.scalar(select(func.count()).select_from(Signature))


def model_count(reg) -> int:
    with reg.catalog.reader() as session:
        return session.scalar(select(func.count()).select_from(Model))


def write_trust(path: Path, rules: list[tuple[list[str], list[Path]]]) -> Path:
    """A trust policy: one [[trust]] rule per (repo globs, public key files)."""
    lines = []
    for repos, keys in rules:
        lines += ["[[trust]]", f"repos = {repos!r}".replace("'", '"'),
                  "keys = [" + ", ".join(f'"{k}"' for k in keys) + "]", ""]
    path.write_text("\n".join(lines))
    return path
