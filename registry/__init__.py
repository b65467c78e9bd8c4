"""registry: a model artifact registry with manifest verification.

The Python API mirrors the CLI; heavy modules load on first use so ``import registry`` stays cheap
(and works on a mirror host without torch).

    import registry
    result = registry.pull("vidore/colqwen2-v0.1")          # -> PullResult
    model, processor = registry.load("vidore/colqwen2-v0.1")
"""

from __future__ import annotations

from importlib import import_module
from typing import Any


# public name -> "module:attribute" (resolved lazily)
_API = {
    "Settings": "registry.config:Settings",
    "Registry": "registry.services.context:Registry",
    "add": "registry.api:add",
    "pull": "registry.api:pull",
    "verify": "registry.api:verify",
    "load": "registry.api:load",
    "register": "registry.api:register",
    "sign": "registry.api:sign",
    "verify_signature": "registry.api:verify_signature",
    # the frozen results the functions return
    "AddResult": "registry.services.add:AddResult",
    "PullResult": "registry.services.pull:PullResult",
    "VerifyReport": "registry.services.verify:VerifyReport",
    "RegisterResult": "registry.services.register:RegisterResult",
    "ModelSummary": "registry.services.listing:ModelSummary",
    "ModelDetail": "registry.services.listing:ModelDetail",
    "ExportResult": "registry.services.bundle:ExportResult",
    "ImportResult": "registry.services.bundle:ImportResult",
    "DeployResult": "registry.services.deploy:DeployResult",
    "AuditReport": "registry.services.audit:AuditReport",
    "UndeployResult": "registry.services.undeploy:UndeployResult",
    "ScanReport": "registry.services.scan:ScanReport",
    "HistoryPage": "registry.services.history:HistoryPage",
    "GcResult": "registry.services.gc:GcResult",
    "MergeResult": "registry.services.merge:MergeResult",
    "SignResult": "registry.services.signing:SignResult",
    "SignatureCheck": "registry.services.signing:SignatureCheck",
}
# the exception tree (registry/errors.py): each class carries its CLI exit code
_ERRORS = ("RegistryError", "UsageError", "InvalidPath", "ManifestError", "NotFound", "ModelNotFound", "RepoNotFound",
           "RevisionNotFound", "EntryNotFound", "CatalogNotFound", "IncompleteModel", "IntegrityError", "FormatError",
           "SchemaOutOfDate", "UpstreamError", "EndpointUnreachable", "AuthError", "ConflictError", "StorageError",
           "CatalogDamaged",
           "SmokeFailed", "MissingExtra", "VerificationFailed", "SignatureError")
_API.update({name: f"registry.errors:{name}" for name in _ERRORS})

__all__ = sorted([*_API, "__version__"])


def __getattr__(name: str) -> Any:
    if name == "__version__":
        from registry.config import package_version

        return package_version()
    target = _API.get(name)
    if target is None:
        raise AttributeError(f"module 'registry' has no attribute {name!r}")
    module, attr = target.split(":")
    return getattr(import_module(module), attr)
