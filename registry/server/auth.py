"""Bearer tokens for ``registry serve --token-file FILE``.

The file is TOML::

    # Repos whose id matches one of these globs need a token; the others are public. Default ["*"].
    protected = ["acme/*"]

    [[tokens]]
    name = "gpu-nodes"                 # shown in logs, never the token
    sha256 = "<64 hex>"                # sha256 of the token (the file then holds no secret) ...
    # token = "hf_..."                 # ... or the token itself
    read = ["acme/*", "org/model"]     # repo globs this token may read

Clients send the token as ``Authorization: Bearer <token>`` (huggingface_hub does this from ``HF_TOKEN``).
A protected repo answers the same 401 whether it exists or not, so an anonymous client learns nothing.
"""

from __future__ import annotations

import fnmatch
import hashlib
import hmac
import tomllib
from dataclasses import dataclass
from pathlib import Path

from registry.errors import UsageError
from registry.hashing import SHA256_RE


@dataclass(frozen=True)
class Grant:
    name: str
    sha256: str
    read: tuple[str, ...]


@dataclass(frozen=True)
class Access:
    """The decision for one request on one repo."""

    allowed: bool
    authenticated: bool  # a valid token was presented


@dataclass(frozen=True)
class TokenPolicy:
    protected: tuple[str, ...] = ()
    grants: tuple[Grant, ...] = ()

    @classmethod
    def open(cls) -> "TokenPolicy":
        return cls()

    @classmethod
    def load(cls, path: Path) -> "TokenPolicy":
        try:
            data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
        except FileNotFoundError as exc:
            raise UsageError(f"--token-file {path}: no such file") from exc
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise UsageError(f"--token-file {path}: not valid TOML: {exc}") from exc
        protected = data.get("protected", ["*"])
        if not isinstance(protected, list) or not all(isinstance(g, str) and g for g in protected):
            raise UsageError(f"--token-file {path}: 'protected' must be a list of repo globs like \"acme/*\"")
        unknown = set(data) - {"protected", "tokens"}
        if unknown:
            raise UsageError(f"--token-file {path}: unknown keys {sorted(unknown)}; allowed: protected, tokens")
        grants = []
        for i, raw in enumerate(data.get("tokens", [])):
            where = f"--token-file {path}: tokens[{i}]"
            if not isinstance(raw, dict):
                raise UsageError(f"{where}: must be a table with name, sha256 or token, and read")
            extra = set(raw) - {"name", "sha256", "token", "read"}
            if extra:
                raise UsageError(f"{where}: unknown keys {sorted(extra)}")
            if ("sha256" in raw) == ("token" in raw):
                raise UsageError(f"{where}: give exactly one of 'sha256' (of the token) or 'token'")
            digest = raw.get("sha256") or hashlib.sha256(str(raw["token"]).encode()).hexdigest()
            if not isinstance(digest, str) or not SHA256_RE.match(digest):
                raise UsageError(f"{where}: sha256 must be 64 lowercase hex characters")
            if "token" in raw and (not isinstance(raw["token"], str) or len(raw["token"]) < 8):
                raise UsageError(f"{where}: a token must be a string of at least 8 characters")
            read = raw.get("read", [])
            if not isinstance(read, list) or not read or not all(isinstance(g, str) and g for g in read):
                raise UsageError(f"{where}: 'read' must be a non-empty list of repo globs")
            grants.append(Grant(str(raw.get("name", f"token{i}")), digest, tuple(read)))
        return cls(tuple(protected), tuple(grants))

    def grant_for(self, authorization: str | None) -> Grant | None:
        if not authorization or not authorization.lower().startswith("bearer "):
            return None
        digest = hashlib.sha256(authorization[7:].strip().encode()).hexdigest()
        found = None
        for g in self.grants:  # compare with every grant: the time taken does not say which matched
            if hmac.compare_digest(g.sha256, digest):
                found = g
        return found

    def check(self, repo_id: str, authorization: str | None) -> Access:
        grant = self.grant_for(authorization) if self.grants else None
        if not any(fnmatch.fnmatchcase(repo_id, g) for g in self.protected):
            return Access(True, grant is not None)
        if grant is None:
            return Access(False, False)
        return Access(any(fnmatch.fnmatchcase(repo_id, g) for g in grant.read), True)
