"""Authentication against the real distribution registry: htpasswd (basic auth) and its token auth, whose
Bearer realm is a token service of ours on loopback (distribution verifies tokens but issues none); credentials
from the environment or an auth file; and the refusals: wrong password, no credentials, a pull-only token that
tries to push, a plain-HTTP realm elsewhere, and a 401 whose challenge names no realm."""

from __future__ import annotations

import base64
import json

import pytest

from registry.errors import AuthError
from registry.oci.auth import Credentials, load_credentials, parse_challenge
from registry.services.oci_pull import pull_oci
from registry.services.oci_push import push_model
from tests.oci_helpers import distribution, htpasswd_file, proxy, skopeo, token_service
from tests.pull_helpers import catalog_counts
from tests.test_oci import source  # noqa: F401  (fixtures)

ALICE = Credentials("alice", "s3cret-alice")


@pytest.fixture
def basic_registry(tmp_path):
    path = htpasswd_file(tmp_path / "htpasswd", {"alice": "s3cret-alice"})
    with distribution(tmp_path / "basic", {"htpasswd": str(path)}) as server:
        yield server


@pytest.fixture
def tokens(tmp_path):
    users = {"alice": ("s3cret-alice", ("pull", "push")), "reader": ("s3cret-reader", ("pull",))}
    (tmp_path / "tokens").mkdir()
    with token_service(tmp_path / "tokens", users) as service:
        yield service


@pytest.fixture
def token_registry(tmp_path, tokens):
    with distribution(tmp_path / "token", {"token": tokens.realm, "cert": str(tokens.cert_path)}) as server:
        yield server


def test_basic_auth_push_and_pull(source, target, basic_registry):
    ref = basic_registry.ref("models/adapter")
    with pytest.raises(AuthError, match="needs a login") as err:
        push_model(source, "acme/adapter", ref, insecure=True)
    assert "REGISTRY_OCI_USERNAME" in err.value.message
    with pytest.raises(AuthError, match="refused access as 'alice'"):
        push_model(source, "acme/adapter", ref, insecure=True, credentials=Credentials("alice", "wrong"))
    pushed = push_model(source, "acme/adapter", ref, insecure=True, credentials=ALICE)
    assert pull_oci(target, ref, insecure=True, credentials=ALICE).digest == pushed.digest
    inspect = skopeo("inspect", "--raw", "--tls-verify=false", "--creds", "alice:s3cret-alice",
                     f"docker://{basic_registry.host}/models/adapter:v1")
    assert inspect.returncode == 0 and json.loads(inspect.stdout)["artifactType"].startswith("application/vnd.cncf")


def test_bearer_token_flow(source, target, token_registry, tokens):
    ref = token_registry.ref("models/adapter")
    with pytest.raises(AuthError, match="refused access anonymously"):
        push_model(source, "acme/adapter", ref, insecure=True)
    pushed = push_model(source, "acme/adapter", ref, insecure=True, credentials=ALICE)
    asked = {s for r in tokens.requests if r["user"] == "alice" for s in r["scope"]}
    assert "repository:models/adapter:pull,push" in asked
    assert all(r["service"] == ["test-registry"] for r in tokens.requests)
    reader = Credentials("reader", "s3cret-reader")
    assert pull_oci(target, ref, insecure=True, credentials=reader).digest == pushed.digest
    with pytest.raises(AuthError, match="refused access as 'reader'"):  # its token grants pull only
        push_model(source, "acme/adapter", token_registry.ref("models/other"), insecure=True, credentials=reader)
    with pytest.raises(AuthError, match="token service .* refused the credentials of 'alice'"):
        pull_oci(target, ref, insecure=True, credentials=Credentials("alice", "wrong"))


def test_cross_repo_mount_asks_for_pull_on_the_source(source, token_registry, tokens):
    push_model(source, "acme/adapter", token_registry.ref("models/adapter"), insecure=True, credentials=ALICE)
    moved = push_model(source, "acme/adapter", token_registry.ref("team/adapter"), insecure=True, credentials=ALICE)
    assert moved.mounted_blobs == moved.blobs and moved.uploaded_blobs == 0
    assert any("repository:models/adapter:pull" in r["scope"] for r in tokens.requests)


def test_a_401_without_a_realm(source, target, token_registry, tmp_path):
    push_model(source, "acme/adapter", token_registry.ref("models/adapter"), insecure=True, credentials=ALICE)
    with proxy(token_registry) as p:
        p.faults.strip_realm = True
        with pytest.raises(AuthError, match="names no realm"):
            pull_oci(target, token_registry.ref("models/adapter", host=p.host), insecure=True, credentials=ALICE)
    assert catalog_counts(target)["models"] == 0 and list(target.store.iter_blobs()) == []


def test_cli_reads_credentials_from_the_environment_and_exits_8_without(cli, source, basic_registry, monkeypatch):
    ref = basic_registry.ref("models/adapter")
    monkeypatch.setenv("HOME", str(basic_registry.root))  # no auth file of the developer's
    r = cli("push", "acme/adapter", ref, "--insecure", "--json")
    assert r.exit_code == 8 and "needs a login" in r.json()["message"]
    monkeypatch.setenv("REGISTRY_OCI_USERNAME", "alice")
    monkeypatch.setenv("REGISTRY_OCI_PASSWORD", "s3cret-alice")
    r = cli("push", "acme/adapter", ref, "--insecure", "--json")
    assert r.exit_code == 0, r.stderr
    assert "s3cret" not in r.stdout + r.stderr


def test_credentials_from_auth_files(tmp_path):
    auth = tmp_path / "auth.json"
    token = base64.b64encode(b"bob:pa:ss").decode()
    auth.write_text(json.dumps({"auths": {"https://reg.example:5000": {"auth": token},
                                          "other.example": {"username": "carol", "password": "x"}}}))
    env = {"REGISTRY_AUTH_FILE": str(auth), "HOME": str(tmp_path)}
    assert load_credentials("reg.example:5000", env) == Credentials("bob", "pa:ss")
    assert load_credentials("other.example", env) == Credentials("carol", "x")
    assert load_credentials("absent.example", env) is None
    assert load_credentials("reg.example:5000", {**env, "REGISTRY_OCI_USERNAME": "dan"}) == Credentials("dan", "")
    (tmp_path / ".docker").mkdir()
    (tmp_path / ".docker" / "config.json").write_text(json.dumps({"auths": {"d.example": {"auth": token}}}))
    assert load_credentials("d.example", {"HOME": str(tmp_path)}) == Credentials("bob", "pa:ss")
    auth.write_text("{not json")
    with pytest.raises(AuthError, match="unreadable auth file"):
        load_credentials("reg.example:5000", env)
    assert "pa:ss" not in repr(Credentials("bob", "pa:ss"))


@pytest.mark.parametrize("header, scheme, params", [
    ('Bearer realm="https://auth.example/token",service="registry.example",scope="repository:a/b:pull,push"',
     "bearer", {"realm": "https://auth.example/token", "service": "registry.example",
                "scope": "repository:a/b:pull,push"}),
    ('Basic realm="Registry Realm"', "basic", {"realm": "Registry Realm"}),
    ('Bearer realm="x",error="insufficient_scope",scope="a b"', "bearer",
     {"realm": "x", "error": "insufficient_scope", "scope": "a b"}),
    ('Bearer service="no-realm"', "bearer", {"service": "no-realm"}),
    ('Bearer realm="q\\"uoted"', "bearer", {"realm": 'q"uoted'}),
])
def test_parse_challenge(header, scheme, params):
    got = parse_challenge(header)
    assert got is not None and got.scheme == scheme and dict(got.params) == params
    assert parse_challenge("") is None and parse_challenge(None) is None


def test_a_plain_http_realm_off_loopback_gets_no_credentials():
    import httpx

    from registry.oci.auth import Authenticator

    with httpx.Client() as http:
        auth = Authenticator(http, "127.0.0.1:5000", ALICE, allow_http_realm=True)
        challenge = httpx.Response(401, headers={"WWW-Authenticate": 'Bearer realm="http://auth.example/token"'})
        with pytest.raises(AuthError, match="not https"):
            auth.answer(challenge, "repository:a:pull")  # refused before any request is made
        with pytest.raises(AuthError, match="without a WWW-Authenticate"):
            auth.answer(httpx.Response(401), "repository:a:pull")
        with pytest.raises(AuthError, match="'negotiate'"):
            auth.answer(httpx.Response(401, headers={"WWW-Authenticate": "Negotiate"}), "repository:a:pull")
