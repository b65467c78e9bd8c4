"""Registry authentication: the ``WWW-Authenticate`` challenge of a 401, answered with basic auth or with
a token from the Bearer realm (the distribution token protocol: ``GET realm?service=...&scope=...``,
credentials as basic auth when there are any, anonymous otherwise), and where credentials come from.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from registry.errors import AuthError, UpstreamError
from registry.oci.reference import is_loopback

USERNAME_ENV, PASSWORD_ENV, AUTH_FILE_ENV = "REGISTRY_OCI_USERNAME", "REGISTRY_OCI_PASSWORD", "REGISTRY_AUTH_FILE"
_PARAM_RE = re.compile(r'\s*([A-Za-z][A-Za-z0-9_-]*)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^",\s]*))\s*,?')
HOW_TO_LOG_IN = (f"set {USERNAME_ENV} and {PASSWORD_ENV}, or log in with `skopeo login` / `docker login` "
                 f"(the auth file {AUTH_FILE_ENV}, $XDG_RUNTIME_DIR/containers/auth.json or ~/.docker/config.json)")


@dataclass(frozen=True)
class Credentials:
    username: str
    password: str = ""

    def basic(self) -> str:
        return "Basic " + base64.b64encode(f"{self.username}:{self.password}".encode()).decode()

    def __repr__(self) -> str:  # never print a password
        return f"Credentials(username={self.username!r})"


@dataclass(frozen=True)
class Challenge:
    scheme: str  # lowercase: "bearer", "basic"
    params: Mapping[str, str]


def parse_challenge(header: str | None) -> Challenge | None:
    """``Bearer realm="...",service="...",scope="..."`` → Challenge; None for an empty header."""
    if not header or not header.strip():
        return None
    scheme, _, rest = header.strip().partition(" ")
    params: dict[str, str] = {}
    pos = 0
    while pos < len(rest):
        match = _PARAM_RE.match(rest, pos)
        if not match or match.end() == pos:
            break
        quoted, bare = match.group(2), match.group(3)
        params[match.group(1).lower()] = re.sub(r"\\(.)", r"\1", quoted) if quoted is not None else bare
        pos = match.end()
    return Challenge(scheme.lower(), params)


def _from_auth_file(path: Path, host: str) -> Credentials | None:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise AuthError(f"{path}: unreadable auth file ({exc}); fix it or set {AUTH_FILE_ENV} to another",
                        details={"auth_file": str(path)}) from exc
    auths = data.get("auths") if isinstance(data, dict) else None
    if not isinstance(auths, dict):
        return None
    for key, entry in auths.items():
        bare = re.sub(r"^https?://", "", str(key)).split("/", 1)[0]
        if bare != host or not isinstance(entry, dict):
            continue
        if entry.get("username"):
            return Credentials(str(entry["username"]), str(entry.get("password", "")))
        if entry.get("auth"):
            try:
                user, _, password = base64.b64decode(entry["auth"]).decode().partition(":")
            except (binascii.Error, UnicodeDecodeError, ValueError) as exc:
                raise AuthError(f"{path}: the auth entry for {host} is not base64 of user:password",
                                details={"auth_file": str(path)}) from exc
            return Credentials(user, password)
    return None


def load_credentials(host: str, env: Mapping[str, str]) -> Credentials | None:
    """Credentials for ``host`` (host[:port]): the environment first, then the first auth file that has them."""
    if env.get(USERNAME_ENV):
        return Credentials(env[USERNAME_ENV], env.get(PASSWORD_ENV, ""))
    candidates = []
    if env.get(AUTH_FILE_ENV):
        candidates.append(Path(env[AUTH_FILE_ENV]))
    if env.get("XDG_RUNTIME_DIR"):
        candidates.append(Path(env["XDG_RUNTIME_DIR"]) / "containers" / "auth.json")
    home = env.get("HOME") or os.path.expanduser("~")
    candidates.append(Path(home) / ".docker" / "config.json")
    for path in candidates:
        found = _from_auth_file(path, host)
        if found is not None:
            return found
    return None


class Authenticator:
    """Answers challenges and keeps what it learnt: basic auth for the host, or a token per scope."""

    def __init__(self, http: httpx.Client, registry: str, credentials: Credentials | None, *,
                 allow_http_realm: bool) -> None:
        self._http = http
        self._registry = registry
        self._credentials = credentials
        self._allow_http_realm = allow_http_realm
        self._basic = False
        self._tokens: dict[str, str] = {}
        self._lock = threading.Lock()

    def header(self, scope: str) -> dict[str, str]:
        with self._lock:
            if self._basic and self._credentials is not None:
                return {"Authorization": self._credentials.basic()}
            token = self._tokens.get(scope)
        return {"Authorization": f"Bearer {token}"} if token else {}

    def answer(self, response: httpx.Response, scope: str) -> None:
        """Learn how to pass the challenge of this 401, or raise AuthError saying why not."""
        challenge = parse_challenge(response.headers.get("WWW-Authenticate"))
        if challenge is None:
            raise AuthError(f"{self._registry} answered 401 without a WWW-Authenticate challenge, so there is no way "
                            "to authenticate (is it a registry, or a proxy in front of one?)",
                            details={"registry": self._registry})
        if challenge.scheme == "basic":
            if self._credentials is None:
                raise AuthError(f"{self._registry} needs a login (basic auth); {HOW_TO_LOG_IN}",
                                details={"registry": self._registry})
            with self._lock:
                self._basic = True
            return
        if challenge.scheme != "bearer":
            raise AuthError(f"{self._registry} asks for {challenge.scheme!r} authentication, which this registry "
                            "client does not speak (only Bearer tokens and basic auth)",
                            details={"registry": self._registry})
        realm = challenge.params.get("realm")
        if not realm:
            raise AuthError(f"{self._registry} answered 401 with a Bearer challenge that names no realm, so no token "
                            "can be requested; the registry's token auth is misconfigured",
                            details={"registry": self._registry})
        self._fetch_token(realm, challenge.params.get("service"), scope, challenge.params.get("scope"))

    def _fetch_token(self, realm: str, service: str | None, scope: str, asked: str | None) -> None:
        url = httpx.URL(realm)
        if url.scheme not in ("http", "https") or (url.scheme == "http" and not (
                self._allow_http_realm and is_loopback(url.host))):
            raise AuthError(f"{self._registry}: token realm {realm!r} is not https (plain http only on loopback with "
                            "--insecure): refusing to send credentials there", details={"realm": realm})
        params: list[tuple[str, str]] = []
        if service:
            params.append(("service", service))
        for s in dict.fromkeys(s for s in (*scope.split(" "), *(asked or "").split(" ")) if s):
            params.append(("scope", s))
        headers = {"Authorization": self._credentials.basic()} if self._credentials else {}
        try:
            response = self._http.get(url, params=params, headers=headers)
        except httpx.TransportError as exc:
            raise UpstreamError(f"token realm {realm} of {self._registry} is unreachable: {exc}",
                                details={"realm": realm}) from exc
        if response.status_code in (401, 403):
            who = f"the credentials of {self._credentials.username!r}" if self._credentials else "an anonymous request"
            raise AuthError(f"the token service {realm} refused {who} (HTTP {response.status_code}); {HOW_TO_LOG_IN}",
                            details={"realm": realm})
        token: Any = None
        if response.status_code == 200:
            try:
                body = response.json()
                token = body.get("token") or body.get("access_token")
            except (ValueError, AttributeError):
                token = None
        if not isinstance(token, str) or not token:
            raise AuthError(f"the token service {realm} answered HTTP {response.status_code} without a token",
                            details={"realm": realm})
        with self._lock:
            self._tokens[scope] = token

    def denied(self, scope: str, status: int) -> AuthError:
        who = f"as {self._credentials.username!r}" if self._credentials else "anonymously"
        return AuthError(f"{self._registry} refused access {who} (HTTP {status}) for {scope}; {HOW_TO_LOG_IN}",
                         details={"registry": self._registry, "scope": scope, "status": status})
