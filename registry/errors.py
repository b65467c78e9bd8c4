"""The registry's one exception tree.

Every error carries the process exit code the CLI returns for it; only ``registry.cli.app.main``
turns exceptions into exit codes. Messages say what was wrong and what to do about it.

    RegistryError                      exit 1  (base; never raised directly)
    ├── UsageError                     exit 2  bad arguments or input the user can fix
    │   ├── InvalidPath                        a path that is missing, escapes its folder, or is not a model folder
    │   └── ManifestError                      a garbled or invalid manifest (names the file and the key)
    ├── NotFound                       exit 3
    │   ├── ModelNotFound
    │   ├── RepoNotFound
    │   ├── RevisionNotFound
    │   ├── EntryNotFound
    │   └── CatalogNotFound                the Postgres database in REGISTRY_DATABASE_URL does not exist
    ├── IncompleteModel                exit 4  a required role/file is missing; lists each one
    ├── IntegrityError                 exit 5  bytes that do not match their published digest or size
    │   ├── FormatError                        safetensors/index/pickle problems
    │   └── SignatureError                     a model signature that is malformed, does not verify, or is untrusted
    ├── SchemaOutOfDate                exit 6  the catalog needs `registry db upgrade`
    ├── UpstreamError                  exit 7  the Hub or mirror failed or is not HF-compatible
    │   └── AuthError                  exit 8  401/403: set HF_TOKEN
    ├── ConflictError                  exit 9  state does not allow the operation
    ├── StorageError                   exit 10 disk full, unwritable store
    │   └── CatalogDamaged                     the catalog database file is corrupt, truncated or lacks a table
    ├── SmokeFailed                    exit 11 the smoke inference failed; the model is quarantined
    ├── MissingExtra                   exit 12 an optional dependency (torch, peft, ...) is not installed
    │   └── BrokenExtra                        installed, but it (or a library it needs) cannot be imported here
    └── VerificationFailed             exit 1  `verify` found missing/changed/extra files (report attached)
"""

from __future__ import annotations

from typing import Any, ClassVar


class RegistryError(Exception):
    exit_code: ClassVar[int] = 1
    kind: ClassVar[str] = "error"

    def __init__(self, message: str, *, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details: dict[str, Any] = details or {}

    def to_dict(self) -> dict[str, Any]:
        return {
            "error": type(self).__name__,
            "kind": self.kind,
            "message": self.message,
            "exit_code": self.exit_code,
            "details": self.details,
        }


class UsageError(RegistryError):
    exit_code = 2
    kind = "usage"


class InvalidPath(UsageError):
    kind = "invalid-path"


class ManifestError(UsageError):
    kind = "manifest"


class NotFound(RegistryError):
    exit_code = 3
    kind = "not-found"


class ModelNotFound(NotFound):
    kind = "model-not-found"


class RepoNotFound(NotFound):
    kind = "repo-not-found"


class RevisionNotFound(NotFound):
    kind = "revision-not-found"


class EntryNotFound(NotFound):
    kind = "entry-not-found"


class CatalogNotFound(NotFound):
    """The catalog database named by REGISTRY_DATABASE_URL does not exist."""

    kind = "catalog-not-found"


class IncompleteModel(RegistryError):
    """A required component is missing. ``details["missing"]`` lists ``"role: path"`` strings."""

    exit_code = 4
    kind = "incomplete"

    def __init__(self, message: str, *, missing: list[str] | None = None, details: dict[str, Any] | None = None):
        merged = dict(details or {})
        merged["missing"] = list(missing or [])
        super().__init__(message, details=merged)

    @property
    def missing(self) -> list[str]:
        return list(self.details["missing"])


class IntegrityError(RegistryError):
    exit_code = 5
    kind = "integrity"


class FormatError(IntegrityError):
    kind = "format"


class SignatureError(IntegrityError):
    """A model signature (model.sig) that is malformed, over other bytes, or by a key the policy does not trust."""

    kind = "signature"


class SchemaOutOfDate(RegistryError):
    exit_code = 6
    kind = "schema"


class UpstreamError(RegistryError):
    exit_code = 7
    kind = "upstream"


class AuthError(UpstreamError):
    exit_code = 8
    kind = "auth"


class ConflictError(RegistryError):
    exit_code = 9
    kind = "conflict"


class StorageError(RegistryError):
    exit_code = 10
    kind = "storage"


class CatalogDamaged(StorageError):
    """The catalog database is not a readable catalog (garbage, truncation, a dropped table): restore it from a
    backup. ``details``: url, reason."""

    kind = "catalog-damaged"


class SmokeFailed(RegistryError):
    exit_code = 11
    kind = "smoke"


class MissingExtra(RegistryError):
    exit_code = 12
    kind = "missing-extra"

    # what each extra brings, and README's install spelling (torch's CPU wheel first, everything pinned)
    EXTRAS: ClassVar[dict[str, str]] = {"ml": "torch, transformers, peft, sentence-transformers",
                                        "colpali": "colpali-engine", "bge": "FlagEmbedding"}
    INSTALL: ClassVar[str] = ("pip install -c .ci/constraints.txt torch==2.13.0 && "
                              "pip install -c .ci/constraints.txt -e '.[{extra}]'")

    @classmethod
    def for_module(cls, module: str, extra: str) -> "MissingExtra":
        brings = cls.EXTRAS.get(extra, module)
        return cls(
            f"this needs the {extra!r} extra ({brings}), and {module!r} is not installed here; "
            f"install it as README does: {cls.INSTALL.format(extra=extra)}",
            details={"module": module, "extra": extra, "install": cls.INSTALL.format(extra=extra)},
        )


class BrokenExtra(MissingExtra):
    """An optional library is installed but cannot be used here: it fails to import, or a library it needs is
    missing or of a version it does not work with. The environment's fault, never the model's: nothing is
    quarantined. ``details``: library, version, module (what failed), and install (what to do)."""

    kind = "broken-extra"


class VerificationFailed(RegistryError):
    exit_code = 1
    kind = "verification"


class EndpointUnreachable(UpstreamError):
    """exit 7: no connection to the Hub or mirror at all (refused, DNS, offline mode): callers may fall back to the store."""

    kind = "unreachable"
