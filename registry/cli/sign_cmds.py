"""sign / verify-signature, and the options other commands share for signatures and the trust policy."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Optional

import typer

from registry.cli.base import JsonOpt, app, echo, emit_json, human_size, open_registry

TrustOpt = Annotated[Optional[Path], typer.Option(
    "--trust", help="Trust policy (TOML: trusted keys per repo glob; default REGISTRY_TRUST): only models with a valid "
                    "signature from a trusted signer pass (see docs/signing.md).")]
IdentityOpt = Annotated[Optional[str], typer.Option("--identity", help="Sigstore keyless: the signer's identity "
                                                                       "(the certificate's email or URI).")]
IssuerOpt = Annotated[Optional[str], typer.Option("--issuer", help="Sigstore keyless: the signer's OIDC issuer.")]
TrustConfigOpt = Annotated[Optional[Path], typer.Option(
    "--trust-config", help="Sigstore keyless: a ClientTrustConfig JSON carried offline (Fulcio and Rekor roots).")]


def keyless_signer(identity: str | None, issuer: str | None, trust_config: Path | None):  # -> SigstoreSigner | None
    """The Sigstore signer the three options name, or None when none is given."""
    from registry.errors import UsageError
    from registry.signing.trust import SigstoreSigner

    given = [v is not None for v in (identity, issuer, trust_config)]
    if not any(given):
        return None
    if not all(given):
        raise UsageError("a Sigstore keyless signature is checked with all three of --identity, --issuer and "
                         "--trust-config")
    assert identity and issuer and trust_config
    if not trust_config.is_file():
        raise UsageError(f"--trust-config {trust_config}: no such file")
    return SigstoreSigner(identity, issuer, trust_config.expanduser().absolute())


@app.command("sign")
def sign_cmd(
    name: Annotated[str, typer.Argument(help="NAME or NAME@REVISION of a verified or registered model.")],
    key: Annotated[Path, typer.Option("--key", help="ECDSA private key (PEM), as for `model_signing sign key`; "
                                                    "password in REGISTRY_KEY_PASSWORD if it is encrypted.")],
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="Also write the model.sig here.")] = None,
    json_out: JsonOpt = False,
) -> None:
    """Sign a model's files (OpenSSF model-signing v1.0) from the catalog's digests; nothing is re-hashed."""
    from registry.services.signing import sign_model

    password = os.environ.get("REGISTRY_KEY_PASSWORD")
    result = sign_model(open_registry(), name, key, output=output, password=password.encode() if password else None)
    if json_out:
        emit_json(result)
        return
    echo(f"signed {result.name}@{result.commit[:12]}: {result.files} files, root digest {result.root_digest}; "
         f"key {result.signer[:16]}{' (replaced its earlier signature)' if result.replaced else ''}")
    if result.output:
        echo(f"wrote {result.output} ({human_size(result.bytes)})")


@app.command("verify-signature")
def verify_signature_cmd(
    name: Annotated[str, typer.Argument(help="NAME or NAME@REVISION")],
    key: Annotated[Optional[Path], typer.Option("--key", help="The signer's ECDSA public key (PEM).")] = None,
    identity: IdentityOpt = None,
    issuer: IssuerOpt = None,
    trust_config: TrustConfigOpt = None,
    trust: TrustOpt = None,
    deep: Annotated[bool, typer.Option("--deep", help="Also re-hash the blobs and compare with what was signed.")
                    ] = False,
    json_out: JsonOpt = False,
) -> None:
    """Check a model's signature (by --key, a Sigstore identity, or any signer the trust policy trusts) against the
    catalog's digests, and with --deep against the bytes in the store. Exit 5 when it does not match."""
    from registry.services.signing import verify_model_signature

    result = verify_model_signature(open_registry(trust_file=trust), name, key_path=key,
                                    keyless=keyless_signer(identity, issuer, trust_config), deep=deep)
    if json_out:
        emit_json({"ok": True, **vars(result)})
        return
    how = f"; --deep: {result.blobs_hashed} blobs re-hashed ({human_size(result.bytes_hashed)})" if result.deep else ""
    signer = result.signer[:16] if result.method == "key" else result.signer
    echo(f"{result.name}@{result.commit[:12]}: signature by {signer} "
         f"({result.method}) verifies: {result.files} files, root digest {result.root_digest}{how}")
