"""Signing benchmark: ``registry sign`` / ``verify-signature`` (from the catalog's digests) against
``model_signing sign key`` / ``verify key`` (which hash every byte) on the same registered model, in one run.

The model: ``--gb`` sparse blobs of 1 GB each (distinct bytes, so distinct digests; bench/hashing.py's sparse store),
hashed for real once, recorded in the catalog, registered, and deployed with ``registry deploy --layout dir`` (hard links to
the store); model_signing runs on that deployed folder. Each round also checks interoperability: model_signing must
accept the registry's signature of the folder, and the registry must accept model_signing's.

    python bench/signing.py [--gb 10] [--repeat 3]

Data lives in bench/_data/signing (git-ignored) and is reused between runs. GB = 10^9 bytes.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

from cryptography.hazmat.primitives import serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec  # noqa: E402
from sqlalchemy import select  # noqa: E402

from hashing import sparse_store  # noqa: E402  (bench/hashing.py)
from registry.catalog.models import Model  # noqa: E402
from registry.services.context import Registry  # noqa: E402
from registry.services.deploy import deploy  # noqa: E402
from registry.services.signing import Candidate, open_with_key, own_files, sign_model, verify_model_signature  # noqa: E402
from registry.signing import load_public_key, oms  # noqa: E402

DATA = ROOT / "bench" / "_data" / "signing"
GB = 1e9


def _env(home: Path) -> dict[str, str]:
    return {"REGISTRY_HOME": str(home), "REGISTRY_ACTOR": "bench"}


def registered_model(home: Path, total_gb: int) -> tuple[Registry, str]:
    """bench/hashing.py's sparse store (1 GB blobs, each hashed for real and recorded), as a registered model."""
    reg = sparse_store(home, total_gb)
    name = f"bench/sparse-{total_gb}"
    with reg.catalog.session() as session:
        session.scalars(select(Model).where(Model.name == name)).one().state = "registered"
    return reg, name


def make_keys(folder: Path) -> tuple[Path, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    private, public = folder / "key.pem", folder / "key.pub"
    if not private.exists():
        key = ec.generate_private_key(ec.SECP256R1())
        private.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                              serialization.PrivateFormat.TraditionalOpenSSL,
                                              serialization.NoEncryption()))
        public.write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM,
                                                         serialization.PublicFormat.SubjectPublicKeyInfo))
    return private, public


def timed(cmd: list[str | Path], env: dict[str, str] | None = None) -> float:
    t = time.perf_counter()
    proc = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, env=env)
    elapsed = time.perf_counter() - t
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(map(str, cmd))} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return elapsed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--gb", type=int, default=10)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()

    home = DATA / "home"
    reg, name = registered_model(home, args.gb)
    private, public = make_keys(DATA / "keys")
    folder = DATA / "deployed"
    shutil.rmtree(folder, ignore_errors=True)
    deploy(reg, name, folder, layout="dir")
    nbytes = sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())
    env = {**os.environ, **_env(home)}
    py = sys.executable
    ours_sig, theirs_sig = DATA / "ours.sig", folder / oms.SIGNATURE_FILE
    with reg.catalog.reader() as session:
        files = own_files(session.scalars(select(Model).where(Model.name == name)).one())
    key = load_public_key(public)

    runs: dict[str, list[float]] = {k: [] for k in ("floor_cli", "sign_cli", "verify_cli", "sign_api", "verify_api",
                                                    "ms_sign", "ms_verify")}
    for i in range(args.repeat):
        # what any registry command costs before its work: interpreter, imports, opening the catalog
        runs["floor_cli"].append(timed([py, "-m", "registry", "db", "current"], env))
        runs["sign_cli"].append(timed([py, "-m", "registry", "sign", name, "--key", private, "--output", ours_sig], env))
        runs["verify_cli"].append(timed([py, "-m", "registry", "verify-signature", name, "--key", public], env))
        t = time.perf_counter()
        ours = sign_model(reg, name, private)
        runs["sign_api"].append(time.perf_counter() - t)
        t = time.perf_counter()
        verify_model_signature(reg, name, key_path=public)
        runs["verify_api"].append(time.perf_counter() - t)
        # interoperability, timed: model_signing checks our signature of the deployed folder ...
        theirs_sig.unlink(missing_ok=True)
        shutil.copyfile(ours_sig, theirs_sig)
        runs["ms_verify"].append(timed([py, "-m", "model_signing", "verify", "key", folder, "--signature",
                                        theirs_sig, "--public_key", public]))
        # ... and signs it itself, which we then check from the catalog
        theirs_sig.unlink()
        runs["ms_sign"].append(timed([py, "-m", "model_signing", "sign", "key", folder, "--signature", theirs_sig,
                                      "--private_key", private]))
        label = "model_signing's model.sig"
        statement = open_with_key(Candidate("key", key.fingerprint, theirs_sig.read_bytes(), label), key, label)
        problems = oms.compare(statement, files, exact=True)
        if problems or statement.root_digest != ours.root_digest:
            raise SystemExit(f"the registry does not accept model_signing's signature: {problems}, root digest "
                             f"{statement.root_digest} vs ours {ours.root_digest}")
        print(f"  round {i + 1}: " + ", ".join(f"{k} {v[-1]:.3f}s" for k, v in runs.items()), flush=True)

    med = {k: statistics.median(v) for k, v in runs.items()}
    load = os.getloadavg()[0]
    print()
    print(f"{nbytes / GB:.1f} GB in {len(files)} files (sparse, warm page cache), median of {args.repeat} interleaved "
          f"rounds, {os.cpu_count()} cores, load average {load:.1f}; model-signing "
          f"{__import__('importlib.metadata').metadata.version('model-signing')}.")
    print()
    print("| step | registry | model_signing (hashes every byte) | speed-up |")
    print("|---|---|---|---|")
    print(f"| sign, CLI (process start included) | {med['sign_cli']:.2f} s | {med['ms_sign']:.2f} s "
          f"| {med['ms_sign'] / med['sign_cli']:.0f}x |")
    print(f"| sign, in-process (`sign_model`) | {med['sign_api'] * 1000:.1f} ms | {med['ms_sign']:.2f} s "
          f"| {med['ms_sign'] / med['sign_api']:.0f}x |")
    print(f"| verify, CLI (process start included) | {med['verify_cli']:.2f} s | {med['ms_verify']:.2f} s "
          f"| {med['ms_verify'] / med['verify_cli']:.0f}x |")
    print(f"| verify, in-process (`verify_model_signature`) | {med['verify_api'] * 1000:.1f} ms | "
          f"{med['ms_verify']:.2f} s | {med['ms_verify'] / med['verify_api']:.0f}x |")
    print(f"| (any registry command's start: `registry db current`) | {med['floor_cli']:.2f} s | | |")
    print()
    print(f"interoperability, every round: `model_signing verify key` accepted the registry's signature of the "
          f"deployed folder, and the registry accepted model_signing's ({len(files)} files, same root digest "
          f"{statement.root_digest[:16]}).")
    print("all runs (s): " + "; ".join(f"{k} " + ", ".join(f"{x:.3f}" for x in v) for k, v in runs.items()))


if __name__ == "__main__":
    main()
