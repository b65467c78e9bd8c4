"""huggingface_hub's exceptions → ours. The library names its HTTP errors the same way in 1.x and 2.x."""

from __future__ import annotations

from registry.errors import AuthError, RegistryError, RepoNotFound, RevisionNotFound, UpstreamError


def _status(exc: BaseException) -> int | None:
    response = getattr(exc, "response", None)
    return getattr(response, "status_code", None)


def _header(exc: BaseException, name: str) -> str | None:
    response = getattr(exc, "response", None)
    headers = getattr(response, "headers", None)
    return headers.get(name) if headers is not None else None


def translate(exc: BaseException, *, endpoint: str, repo_id: str, revision: str | None = None,
              path: str | None = None) -> RegistryError:
    """Map an error raised by huggingface_hub (or its HTTP client) for one request to our tree."""
    from huggingface_hub import errors as hf

    where = f"{repo_id}" + (f"@{revision}" if revision else "") + (f": {path}" if path else "")
    status = _status(exc)
    code = _header(exc, "X-Error-Code")
    details = {"endpoint": endpoint, "repo": repo_id, "revision": revision, "path": path, "status": status}
    if isinstance(exc, hf.GatedRepoError) or (status in (401, 403) and code != "RepoNotFound"):
        return AuthError(
            f"{endpoint} refused access to {where} (HTTP {status}): the repo is private or gated, or the token "
            "is invalid; set HF_TOKEN (or pass --token) to a token that can read it",
            details=details,
        )
    if isinstance(exc, hf.RevisionNotFoundError) or code == "RevisionNotFound":
        return RevisionNotFound(
            f"{repo_id} has no revision {revision!r} on {endpoint}; give a branch, tag or commit that exists",
            details=details,
        )
    if isinstance(exc, hf.RepositoryNotFoundError) or code == "RepoNotFound":
        return RepoNotFound(
            f"no repo {repo_id!r} on {endpoint} (if it is private or gated, set HF_TOKEN to a token that can read it)",
            details=details,
        )
    if status == 404:
        return RepoNotFound(
            f"{endpoint} answered 404 for {where} without an X-Error-Code header: the repo does not exist there, or "
            "the endpoint is not Hub-compatible (check HF_ENDPOINT / --endpoint)",
            details=details,
        )
    if status is not None:
        return UpstreamError(f"{endpoint} failed for {where}: HTTP {status}: {exc}", details=details)
    return UpstreamError(f"{endpoint}: request for {where} failed: {type(exc).__name__}: {exc}", details=details)
