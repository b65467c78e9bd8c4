"""The real CNCF distribution registry (Debian's ``docker-registry``) for the OCI tests, started on a free
loopback port with a temporary config and storage; a Bearer token service of our own for its token auth
(distribution verifies tokens, it does not issue them); and a proxy on loopback that passes everything through
to the real registry but can corrupt, strip or slow what it forwards (faults the real server cannot make).
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import http.client
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
DISTRIBUTION = shutil.which("docker-registry")
SKOPEO = shutil.which("skopeo")
HTPASSWD = shutil.which("htpasswd")
SERVICE, ISSUER = "test-registry", "test-token-issuer"


def require(tool: str | None, name: str) -> None:
    """CI installs these (.ci/run); a developer without them gets a skip that says what to install."""
    if tool is None:
        if os.environ.get("CI"):
            pytest.fail(f"{name} is not installed (CI must install it: see .ci/run)")
        pytest.skip(f"{name} is not installed (apt-get install -y docker-registry skopeo apache2-utils)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---- the real registry ------------------------------------------------------------------------------

@dataclass
class Distribution:
    """A running ``docker-registry serve`` (CNCF distribution 2.8)."""

    root: Path
    port: int
    process: subprocess.Popen

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.host}"

    def ref(self, repo: str, tag: str | None = "v1", host: str | None = None) -> str:
        return f"oci://{host or self.host}/{repo}" + (f":{tag}" if tag else "")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def _config(root: Path, port: int, auth: dict | None) -> str:
    lines = ["version: 0.1", "log:", "  level: error", "  accesslog:", "    disabled: true", "storage:",
             "  filesystem:", f"    rootdirectory: {root / 'storage'}", "  delete:", "    enabled: true",
             "http:", f"  addr: 127.0.0.1:{port}", f"  secret: {uuid.uuid4().hex}"]
    if auth and "htpasswd" in auth:
        lines += ["auth:", "  htpasswd:", "    realm: test-realm", f"    path: {auth['htpasswd']}"]
    elif auth and "token" in auth:
        lines += ["auth:", "  token:", f"    realm: {auth['token']}", f"    service: {SERVICE}",
                  f"    issuer: {ISSUER}", f"    rootcertbundle: {auth['cert']}"]
    return "\n".join(lines) + "\n"


@contextlib.contextmanager
def distribution(root: Path, auth: dict | None = None) -> Iterator[Distribution]:
    require(DISTRIBUTION, "docker-registry")
    root.mkdir(parents=True, exist_ok=True)
    for _ in range(5):  # a port picked free can be taken before the registry binds it: try another
        port = free_port()
        config = root / "config.yml"
        config.write_text(_config(root, port, auth))
        log = open(root / "registry.log", "ab")
        proc = subprocess.Popen([DISTRIBUTION, "serve", str(config)], stdout=log, stderr=log)
        log.close()
        server = Distribution(root, port, proc)
        deadline = time.monotonic() + 20
        while proc.poll() is None and time.monotonic() < deadline:
            try:
                if httpx.get(f"{server.url}/v2/", timeout=1).status_code in (200, 401):
                    break
            except httpx.TransportError:
                time.sleep(0.05)
        if proc.poll() is None:
            try:
                yield server
            finally:
                server.stop()
            return
    raise RuntimeError(f"docker-registry did not start: {(root / 'registry.log').read_text()[-2000:]}")


def htpasswd_file(path: Path, users: dict[str, str]) -> Path:
    """distribution reads bcrypt entries only; Apache's htpasswd writes them (-B)."""
    require(HTPASSWD, "htpasswd (apache2-utils)")
    lines = [subprocess.run([HTPASSWD, "-nbB", user, password], check=True, capture_output=True, text=True)
             .stdout.strip() for user, password in users.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


# ---- a Bearer token service -------------------------------------------------------------------------

def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@dataclass
class TokenService:
    """Issues the JWTs distribution's ``auth: token`` accepts: RS256, signed by a key whose self-signed
    certificate is the registry's rootcertbundle and travels in the ``x5c`` header."""

    users: dict[str, tuple[str, tuple[str, ...]]]  # name -> (password, actions granted on every repository)
    root: Path
    port: int = 0
    requests: list[dict] = field(default_factory=list)

    def __post_init__(self) -> None:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import rsa
        from cryptography.x509.oid import NameOID

        self._key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test token signer")])
        now = dt.datetime.now(dt.timezone.utc)
        cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(self._key.public_key())
                .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(days=1))
                .not_valid_after(now + dt.timedelta(days=1))
                .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                .sign(self._key, hashes.SHA256()))
        self.cert_path = self.root / "token-signer.pem"
        self.cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        self._x5c = base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode()

    @property
    def realm(self) -> str:
        return f"http://127.0.0.1:{self.port}/token"

    def issue(self, subject: str, access: list[dict]) -> str:
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import padding

        now = int(time.time())
        header = {"typ": "JWT", "alg": "RS256", "x5c": [self._x5c]}
        claims = {"iss": ISSUER, "sub": subject, "aud": SERVICE, "exp": now + 300, "nbf": now - 10, "iat": now,
                  "jti": uuid.uuid4().hex, "access": access}
        signing_input = f"{_b64url(json.dumps(header).encode())}.{_b64url(json.dumps(claims).encode())}"
        signature = self._key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
        return f"{signing_input}.{_b64url(signature)}"

    def grant(self, authorization: str | None, query: dict[str, list[str]]) -> tuple[int, dict]:
        user = None
        if authorization:
            if not authorization.startswith("Basic "):
                return 401, {"error": "basic auth expected"}
            name, _, password = base64.b64decode(authorization[6:]).decode().partition(":")
            if name not in self.users or self.users[name][0] != password:
                return 401, {"error": "invalid credentials"}
            user = name
        self.requests.append({"user": user, "service": query.get("service"), "scope": query.get("scope", [])})
        allowed = self.users[user][1] if user else ()
        access = []
        for scope in query.get("scope", []):
            kind, _, rest = scope.partition(":")
            repo, _, actions = rest.rpartition(":")
            granted = [a for a in actions.split(",") if a in allowed]
            if kind == "repository" and granted:
                access.append({"type": "repository", "name": repo, "actions": granted})
        token = self.issue(user or "anonymous", access)
        return 200, {"token": token, "access_token": token, "expires_in": 300}


@contextlib.contextmanager
def token_service(root: Path, users: dict[str, tuple[str, tuple[str, ...]]]) -> Iterator[TokenService]:
    service = TokenService(users, root)

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:  # noqa: N802
            url = urllib.parse.urlsplit(self.path)
            status, body = (404, {"error": "no such path"}) if url.path != "/token" else \
                service.grant(self.headers.get("Authorization"), urllib.parse.parse_qs(url.query))
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    with _serving(Handler) as port:
        service.port = port
        yield service


@contextlib.contextmanager
def _serving(handler: type[BaseHTTPRequestHandler]) -> Iterator[int]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


# ---- a fault-injecting proxy in front of the real registry ------------------------------------------

@dataclass
class ProxyFaults:
    corrupt: set[str] = field(default_factory=set)  # blob digests whose GET bodies get one byte flipped
    strip_realm: bool = False  # 401 answers lose the realm of their Bearer challenge
    throttle: int | None = None  # bytes per second for blob bodies, both ways
    forwarded: int = 0  # blob body bytes passed on so far (uploads and downloads)


@dataclass
class Proxy:
    port: int
    faults: ProxyFaults

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"


_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "proxy-connection"}


@contextlib.contextmanager
def proxy(upstream: Distribution) -> Iterator[Proxy]:
    faults = ProxyFaults()
    lock = threading.Lock()

    def count(n: int) -> None:
        with lock:
            faults.forwarded += n
        if faults.throttle:
            time.sleep(n / faults.throttle)

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:
            pass

        def _forward(self) -> None:
            is_blob = "/blobs/" in self.path
            conn = http.client.HTTPConnection("127.0.0.1", upstream.port, timeout=60)
            conn.putrequest(self.command, self.path, skip_host=True, skip_accept_encoding=True)
            for k, v in self.headers.items():
                if k.lower() not in _HOP:
                    conn.putheader(k, v)
            length = int(self.headers.get("Content-Length") or 0)
            conn.endheaders()
            left = length
            while left:
                chunk = self.rfile.read(min(left, 256 * 1024))
                if not chunk:
                    break
                conn.send(chunk)
                left -= len(chunk)
                if is_blob:
                    count(len(chunk))
            response = conn.getresponse()
            headers = [(k, v) for k, v in response.getheaders() if k.lower() not in _HOP]
            if response.status == 401 and faults.strip_realm:
                headers = [(k, v) for k, v in headers if k.lower() != "www-authenticate"]
                headers.append(("WWW-Authenticate", f'Bearer service="{SERVICE}"'))
            self.send_response(response.status)
            for k, v in headers:
                self.send_header(k, v)
            if response.getheader("Content-Length") is None and self.command != "HEAD" \
                    and response.status not in (204, 304):
                self.send_header("Connection", "close")  # no length to forward: the end of the body is the close
                self.close_connection = True
            self.end_headers()
            digest = self.path.split("/blobs/", 1)[-1].split("?")[0] if is_blob else ""
            flip = self.command == "GET" and digest in faults.corrupt
            while chunk := response.read(256 * 1024):
                if flip:
                    chunk = bytes([chunk[0] ^ 0xFF]) + chunk[1:]
                    flip = False
                self.wfile.write(chunk)
                if is_blob and self.command == "GET":
                    count(len(chunk))
            conn.close()

        do_GET = do_HEAD = do_PUT = do_POST = do_PATCH = do_DELETE = _forward

    with _serving(Handler) as port:
        yield Proxy(port, faults)


# ---- third-party checks -----------------------------------------------------------------------------

def skopeo(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    require(SKOPEO, "skopeo")
    return subprocess.run([SKOPEO, *args], capture_output=True, text=True, timeout=timeout)


def registry_process(env: dict[str, str], *args: str) -> subprocess.Popen:
    """``python -m registry ARGS`` in a child process (for kill -9)."""
    full = {**os.environ, **env, "PYTHONPATH": str(REPO_ROOT)}
    return subprocess.Popen([sys.executable, "-m", "registry", *args], env=full, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def raw_manifest(server: Distribution, repo: str, reference: str) -> dict:
    r = httpx.get(f"{server.url}/v2/{repo}/manifests/{reference}",
                  headers={"Accept": "application/vnd.oci.image.manifest.v1+json"})
    r.raise_for_status()
    return r.json()


def put_blob(server: Distribution, repo: str, data: bytes) -> dict:
    """Upload bytes straight through the API (for hand-made manifests)."""
    import hashlib

    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    r = httpx.post(f"{server.url}/v2/{repo}/blobs/uploads/")
    r.raise_for_status()
    location = httpx.URL(server.url).join(r.headers["Location"]).copy_merge_params({"digest": digest})
    httpx.put(location, content=data, headers={"Content-Type": "application/octet-stream"}).raise_for_status()
    return {"digest": digest, "size": len(data)}


def put_manifest(server: Distribution, repo: str, tag: str, manifest: dict) -> str:
    body = json.dumps(manifest).encode()
    r = httpx.put(f"{server.url}/v2/{repo}/manifests/{tag}", content=body,
                  headers={"Content-Type": manifest.get("mediaType", "application/vnd.oci.image.manifest.v1+json")})
    assert r.status_code == 201, r.text
    return r.headers["Docker-Content-Digest"]


# ---- the spec's schemas -----------------------------------------------------------------------------

DATA = Path(__file__).resolve().parent / "data"
MODELPACK_LAYER_TYPES = {f"application/vnd.cncf.model.{kind}.v1.{form}"
                         for kind in ("weight", "weight.config", "doc", "code", "dataset")
                         for form in ("raw", "tar", "tar+gzip", "tar+zstd")}


def _validators():
    import jsonschema
    from referencing import Registry, Resource
    from referencing.jsonschema import DRAFT4

    resources = []
    for path in sorted((DATA / "oci-image-spec").glob("*.json")):
        resource = Resource.from_contents(json.loads(path.read_text()), default_specification=DRAFT4)
        for base in ("https://opencontainers.org/schema/", "https://opencontainers.org/schema/image/"):
            resources.append((base + path.name, resource))
    registry = Registry().with_resources(resources)
    manifest_schema = json.loads((DATA / "oci-image-spec" / "image-manifest-schema.json").read_text())
    config_schema = json.loads((DATA / "modelpack" / "config-schema.json").read_text())
    return (jsonschema.Draft4Validator(manifest_schema, registry=registry),
            jsonschema.Draft202012Validator(config_schema,
                                            format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER))


def validate_modelpack(manifest: dict, config: dict) -> None:
    """The OCI image manifest schema, the ModelPack MUSTs of docs/spec.md, and the ModelPack config schema."""
    manifest_validator, config_validator = _validators()
    manifest_validator.validate(manifest)
    config_validator.validate(config)
    assert manifest["mediaType"] == "application/vnd.oci.image.manifest.v1+json"
    assert manifest["artifactType"] == "application/vnd.cncf.model.manifest.v1+json"
    assert manifest["config"]["mediaType"] == "application/vnd.cncf.model.config.v1+json"
    for layer in manifest["layers"]:
        assert layer["mediaType"] in MODELPACK_LAYER_TYPES, layer
        assert layer["annotations"]["org.cncf.model.filepath"], layer
    assert config["modelfs"]["diffIds"] == [layer["digest"] for layer in manifest["layers"]]


def read_layout(layout: Path, tag: str) -> tuple[dict, dict]:
    """The manifest and config ``skopeo copy ... oci:LAYOUT:TAG`` wrote, each checked against its digest."""
    import hashlib

    def blob(digest: str) -> bytes:
        data = (layout / "blobs" / "sha256" / digest[7:]).read_bytes()
        assert "sha256:" + hashlib.sha256(data).hexdigest() == digest
        return data

    index = json.loads((layout / "index.json").read_text())
    entry = next(m for m in index["manifests"] if m.get("annotations", {}).get("org.opencontainers.image.ref.name") == tag)
    manifest = json.loads(blob(entry["digest"]))
    return manifest, json.loads(blob(manifest["config"]["digest"]))
