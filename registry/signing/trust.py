"""The trust policy: which signers the registry accepts for which repos (``REGISTRY_TRUST`` or ``--trust FILE``).

```toml
[[trust]]
repos = ["acme/*", "sentence-transformers/*"]   # repo globs (fnmatch)
keys = ["keys/acme-release.pub"]                # ECDSA PEM public keys; relative to this file

[[trust]]
repos = ["vidore/*"]
trust_config = "sigstore-trust.json"             # a Sigstore ClientTrustConfig carried offline
sigstore = [{ identity = "release@vidore.example", issuer = "https://accounts.example.com" }]
```

With a policy in force, a repo that no rule names has no trusted signer, so its models are refused: the
policy lists what is trusted, everything else is not. Every rule whose globs match a repo adds its signers.
Reading the policy reads only this file and the key files it names.
"""

from __future__ import annotations

import fnmatch
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from registry.errors import UsageError
from registry.signing.keys import PublicKey, load_public_key

MAX_POLICY = 1024 * 1024


@dataclass(frozen=True)
class SigstoreSigner:
    """A keyless signer: the certificate's identity and OIDC issuer, checked against an offline trust root."""

    identity: str
    issuer: str
    trust_config: Path

    @property
    def name(self) -> str:
        return f"{self.identity} ({self.issuer})"


@dataclass(frozen=True)
class TrustRule:
    repos: tuple[str, ...]
    keys: tuple[PublicKey, ...]
    sigstore: tuple[SigstoreSigner, ...]

    def matches(self, repo_id: str) -> bool:
        return any(fnmatch.fnmatchcase(repo_id, g) for g in self.repos)


@dataclass(frozen=True)
class TrustPolicy:
    source: Path
    rules: tuple[TrustRule, ...]

    def keys_for(self, repo_id: str) -> tuple[PublicKey, ...]:
        seen: dict[str, PublicKey] = {}
        for rule in self.rules:
            if rule.matches(repo_id):
                for k in rule.keys:
                    seen.setdefault(k.fingerprint, k)
        return tuple(seen.values())

    def sigstore_for(self, repo_id: str) -> tuple[SigstoreSigner, ...]:
        seen: dict[tuple[str, str, Path], SigstoreSigner] = {}
        for rule in self.rules:
            if rule.matches(repo_id):
                for s in rule.sigstore:
                    seen.setdefault((s.identity, s.issuer, s.trust_config), s)
        return tuple(seen.values())

    def describe(self, repo_id: str) -> str:
        """The signers trusted for ``repo_id``, for messages."""
        names = [k.describe() for k in self.keys_for(repo_id)] + [s.name for s in self.sigstore_for(repo_id)]
        return ", ".join(names) if names else f"none (no rule of {self.source} names {repo_id})"


def _bad(path: Path, where: str, why: str) -> UsageError:
    return UsageError(f"trust policy {path}: {where}: {why}", details={"trust": str(path), "key": where})


def _strings(value: Any, path: Path, where: str, *, empty_ok: bool = False) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value) or (not value and not empty_ok):
        raise _bad(path, where, "must be a list of non-empty strings")
    return tuple(value)


def _rule(item: Any, i: int, path: Path) -> TrustRule:
    where = f"trust[{i}]"
    if not isinstance(item, dict):
        raise _bad(path, where, "must be a table")
    unknown = set(item) - {"repos", "keys", "sigstore", "trust_config"}
    if unknown:
        raise _bad(path, where, f"unknown key(s) {', '.join(sorted(unknown))} (known: repos, keys, sigstore, "
                                "trust_config)")
    repos = _strings(item.get("repos"), path, f"{where}.repos")
    keys = []
    for j, name in enumerate(_strings(item.get("keys", []), path, f"{where}.keys", empty_ok=True)):
        key_path = (path.parent / name).expanduser()
        try:
            keys.append(load_public_key(key_path))
        except UsageError as exc:
            raise _bad(path, f"{where}.keys[{j}]", exc.message) from exc
    signers = []
    raw = item.get("sigstore", [])
    if not isinstance(raw, list):
        raise _bad(path, f"{where}.sigstore", "must be a list of {identity, issuer} tables")
    if raw:
        if not isinstance(item.get("trust_config"), str):
            raise _bad(path, f"{where}.trust_config", "a sigstore signer needs the trust_config file it is checked "
                                                       "against (a Sigstore ClientTrustConfig JSON)")
        trust_config = (path.parent / item["trust_config"]).expanduser()
        if not trust_config.is_file():
            raise _bad(path, f"{where}.trust_config", f"{trust_config}: no such file")
        for j, s in enumerate(raw):
            if not isinstance(s, dict) or set(s) != {"identity", "issuer"} or not all(
                    isinstance(v, str) and v for v in s.values()):
                raise _bad(path, f"{where}.sigstore[{j}]", "must be a table with exactly identity and issuer strings")
            signers.append(SigstoreSigner(s["identity"], s["issuer"], trust_config))
    if not keys and not signers:
        raise _bad(path, where, "names no signer: give keys, or sigstore identities with a trust_config")
    return TrustRule(repos, tuple(keys), tuple(signers))


def load_policy(path: Path | str) -> TrustPolicy:
    path = Path(path).expanduser().absolute()
    if not path.is_file():
        raise UsageError(f"trust policy {path}: no such file (REGISTRY_TRUST / --trust)", details={"trust": str(path)})
    if path.stat().st_size > MAX_POLICY:
        raise _bad(path, "file", "too large")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise _bad(path, "file", f"not valid TOML: {exc}") from exc
    unknown = set(data) - {"trust"}
    if unknown:
        raise _bad(path, "file", f"unknown key(s) {', '.join(sorted(unknown))}; rules go in [[trust]] tables")
    items = data.get("trust")
    if not isinstance(items, list) or not items:
        raise _bad(path, "trust", "no [[trust]] rule: a policy names at least one trusted signer")
    return TrustPolicy(path, tuple(_rule(item, i, path) for i, item in enumerate(items)))
