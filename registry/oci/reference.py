"""``oci://HOST[:PORT]/REPO[:TAG|@sha256:HEX]``: an OCI artifact's address, parsed and checked.

The grammar is the distribution reference grammar (lowercase path components joined by ``.``, ``_``,
``__`` or dashes; tags of at most 128 word characters, dots and dashes; a name of at most 255
characters); only sha256 digests are accepted, the algorithm the registry's blob identity uses.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

from registry.errors import UsageError

SCHEME = "oci://"
_HOST_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_HOST_RE = re.compile(rf"^(?:{_HOST_COMPONENT}(?:\.{_HOST_COMPONENT})*|\[[0-9a-fA-F:.]+\])(?::([0-9]{{1,5}}))?$")
_PATH_COMPONENT_RE = re.compile(r"^[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*$")
TAG_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
DIGEST_RE = re.compile(r"^sha256:[0-9a-f]{64}$")
MAX_NAME = 255
DEFAULT_TAG = "latest"


@dataclass(frozen=True)
class OciReference:
    host: str  # with its port, as written: "127.0.0.1:5000", "[::1]:5000", "ghcr.io"
    repository: str
    tag: str | None = None
    digest: str | None = None  # "sha256:<hex>"

    @property
    def hostname(self) -> str:
        """The host without port or IPv6 brackets."""
        if self.host.startswith("["):
            return self.host[1:self.host.index("]")]
        return self.host.rsplit(":", 1)[0] if ":" in self.host else self.host

    @property
    def reference(self) -> str:
        """What the manifests endpoint takes: the digest when there is one, else the tag (default latest)."""
        return self.digest or self.tag or DEFAULT_TAG

    def with_digest(self, digest: str) -> "OciReference":
        return OciReference(self.host, self.repository, None, digest)

    def with_tag(self, tag: str) -> "OciReference":
        return OciReference(self.host, self.repository, tag, None)

    def __str__(self) -> str:
        tail = f"@{self.digest}" if self.digest else f":{self.tag or DEFAULT_TAG}"
        return f"{SCHEME}{self.host}/{self.repository}{tail}"


def is_oci(text: str) -> bool:
    return isinstance(text, str) and text.startswith(SCHEME)


def _bad(text: str, why: str) -> UsageError:
    return UsageError(f"{text!r} is not an OCI reference: {why}; write oci://HOST[:PORT]/REPO[:TAG|@sha256:HEX], "
                      "e.g. oci://127.0.0.1:5000/models/minilm:v1", details={"reference": text})


def parse_reference(text: str) -> OciReference:
    if not is_oci(text):
        raise _bad(str(text), "it does not start with oci://")
    rest = text[len(SCHEME):]
    if any(c.isspace() or ord(c) < 0x20 for c in rest):
        raise _bad(text, "it contains whitespace or control characters")
    host, slash, path = rest.partition("/")
    match = _HOST_RE.match(host)
    if not match:
        raise _bad(text, f"{host!r} is not a host[:port]")
    if match.group(1) is not None and not 0 < int(match.group(1)) < 65536:
        raise _bad(text, f"port {match.group(1)} is out of range")
    if host.startswith("["):
        try:
            ipaddress.IPv6Address(host[1:host.index("]")])
        except ValueError as exc:
            raise _bad(text, f"{host!r} is not an IPv6 address") from exc
    if not slash or not path:
        raise _bad(text, "the repository is missing")
    digest = tag = None
    if "@" in path:
        path, _, digest = path.partition("@")
        if not DIGEST_RE.match(digest):
            raise _bad(text, f"{digest!r} is not a sha256 digest (sha256: and 64 lowercase hex)")
    last = path.rsplit("/", 1)[-1]
    if ":" in last:
        path, _, tag = path.rpartition(":")
        if not TAG_RE.match(tag):
            raise _bad(text, f"tag {tag!r} is not valid (letters, digits, _ . -; at most 128; not starting with "
                             ". or -)")
    components = path.split("/")
    for component in components:
        if not _PATH_COMPONENT_RE.match(component):
            raise _bad(text, f"repository component {component!r} is not valid (lowercase letters and digits, "
                             "joined by . _ __ or -)")
    if len(host) + 1 + len(path) > MAX_NAME:
        raise _bad(text, f"the name is longer than {MAX_NAME} characters")
    return OciReference(host, path, tag, digest)


def is_loopback(hostname: str) -> bool:
    """Only these hosts may be spoken to over plain HTTP (--insecure)."""
    if hostname.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(hostname).is_loopback
    except ValueError:
        return False
