"""The trust policy (REGISTRY_TRUST / --trust) in deploy, import, serve and pull; bundles and the mirror carrying
signatures; and Sigstore keyless bundles made elsewhere, checked offline. Real registries on SQLite and Postgres,
the real mirror under uvicorn, the real huggingface_hub and model_signing."""

from __future__ import annotations

import json
import pathlib
import shutil
from pathlib import Path

import pytest
from sqlalchemy import select

from registry.catalog.models import Event, Signature
from registry.config import Settings
from registry.services.context import Registry
from tests.add_helpers import make_adapter, store_files
from tests.serve_helpers import add_registered, client_env, http, make_tiny_repo, run_client, serve, set_state
from tests.sign_helpers import make_keys, model_count, ms_verify, signature_count, write_trust

REPO = "acme/tiny"
DATA = Path(__file__).parent / "data"


@pytest.fixture
def keys(tmp_path):
    return make_keys(tmp_path / "keys", "release")


@pytest.fixture
def stranger(tmp_path):
    return make_keys(tmp_path / "keys", "stranger")


@pytest.fixture
def trust(tmp_path, keys):
    return write_trust(tmp_path / "trust.toml", [(["acme/*"], [keys.public])])


def _with_trust(registry: Registry, trust: Path) -> Registry:
    return Registry(Settings.from_env(home=registry.settings.home, database_url=registry.settings.database_url,
                                      trust_file=trust), registry.catalog, registry.store, registry.stat_cache)


# ---- the policy file ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("text, named", [
    ("[[trust]\n", "not valid TOML"),
    ("oops = 1\n", "unknown key(s) oops"),
    ("", "no [[trust]] rule"),
    ('[[trust]]\nrepos = "acme/*"\nkeys = ["k.pub"]\n', "trust[0].repos: must be a list"),
    ('[[trust]]\nrepos = ["acme/*"]\n', "trust[0]: names no signer"),
    ('[[trust]]\nrepos = ["acme/*"]\nkeys = ["absent.pub"]\n', "trust[0].keys[0]: public key"),
    ('[[trust]]\nrepos = ["acme/*"]\nkeys = ["k.pub"]\nextra = 1\n', "unknown key(s) extra"),
    ('[[trust]]\nrepos = ["acme/*"]\nsigstore = [{identity = "a"}]\ntrust_config = "k.pub"\n', "sigstore[0]"),
    ('[[trust]]\nrepos = ["acme/*"]\nsigstore = [{identity = "a", issuer = "b"}]\n', "trust_config"),
])
def test_a_bad_policy_file_is_named(cli, reg, tmp_path, keys, text, named):
    shutil.copy(keys.public, tmp_path / "k.pub")
    add_registered(reg, make_tiny_repo(tmp_path / "m", big=False), REPO)
    policy = tmp_path / "policy.toml"
    policy.write_text(text)
    r = cli("deploy", REPO, "--target", tmp_path / "out", "--trust", policy)
    assert r.exit_code == 2, r.stderr
    assert str(policy) in r.stderr and named in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "out").exists()
    r = cli("deploy", REPO, "--target", tmp_path / "out", "--trust", tmp_path / "absent.toml")
    assert r.exit_code == 2 and "no such file" in r.stderr


# ---- deploy ---------------------------------------------------------------------------------------------------

def test_deploy_needs_a_trusted_signature(cli, reg, tmp_path, keys, stranger, trust, monkeypatch):
    add_registered(reg, make_tiny_repo(tmp_path / "m", big=False), REPO)
    out = tmp_path / "out"
    r = cli("deploy", REPO, "--target", out, "--trust", trust)
    assert r.exit_code == 5 and "acme/tiny@" in r.stderr and "not signed" in r.stderr
    assert keys.fingerprint[:16] in r.stderr and str(trust) in r.stderr and not out.exists()

    assert cli("sign", REPO, "--key", stranger.private).exit_code == 0
    r = cli("deploy", REPO, "--target", out, "--trust", trust)
    assert r.exit_code == 5 and f"its signer {stranger.fingerprint[:16]} is not trusted for acme/tiny" in r.stderr
    outsider = write_trust(tmp_path / "other.toml", [(["other/*"], [keys.public])])
    assert cli("sign", REPO, "--key", keys.private).exit_code == 0
    r = cli("deploy", REPO, "--target", out, "--trust", outsider)
    assert r.exit_code == 5 and "no rule of" in r.stderr

    monkeypatch.setenv("REGISTRY_TRUST", str(trust))  # the environment works like --trust
    r = cli("deploy", REPO, "--target", out, "--layout", "dir", "--json")
    assert r.exit_code == 0, r.stderr
    assert ms_verify(out, keys).returncode == 0  # the trusted signature is the one written, not the stranger's
    r = cli("verify-signature", REPO, "--json")
    assert r.exit_code == 0 and r.json()["signer"] == keys.fingerprint
    with reg.catalog.reader() as session:
        assert session.scalars(select(Event).where(Event.action == "deploy")).one()


def test_an_adapter_needs_its_base_signed_too(cli, reg, tmp_path, keys, trust):
    add_registered(reg, make_tiny_repo(tmp_path / "base", big=False), "acme/base")
    add_registered(reg, make_adapter(tmp_path / "adapter", "acme/base"), "acme/adapter")
    assert cli("sign", "acme/adapter", "--key", keys.private).exit_code == 0
    r = cli("deploy", "acme/adapter", "--target", tmp_path / "cache", "--trust", trust)
    assert r.exit_code == 5 and "acme/base@" in r.stderr and "not signed" in r.stderr
    assert cli("sign", "acme/base", "--key", keys.private).exit_code == 0
    r = cli("deploy", "acme/adapter", "--target", tmp_path / "cache", "--trust", trust, "--json")
    assert r.exit_code == 0, r.stderr
    assert sorted(s.split("@")[0] for s in r.json()["signed"]) == ["acme/adapter"]  # the base's subset is not exact


# ---- bundles ----------------------------------------------------------------------------------------------------

def test_bundles_carry_signatures_and_import_enforces_the_policy(cli, reg, target, tmp_path, keys, stranger, trust):
    from registry.services.bundle import export_bundle, import_bundle

    add_registered(reg, make_tiny_repo(tmp_path / "m", big=False), REPO)
    assert cli("sign", REPO, "--key", stranger.private).exit_code == 0
    bundle = tmp_path / "b.tar"
    export_bundle(reg, [REPO], bundle)
    from registry.errors import SignatureError
    with pytest.raises(SignatureError, match=r"(?s)refused \(import; nothing was imported\).*is not trusted"):
        import_bundle(_with_trust(target, trust), bundle)
    assert model_count(target) == signature_count(target) == 0 and store_files(target) == []

    assert cli("sign", REPO, "--key", keys.private).exit_code == 0
    bundle2 = tmp_path / "b2"
    export_bundle(reg, [REPO], bundle2)
    import_bundle(_with_trust(target, trust), bundle2)
    assert model_count(target) == 1 and signature_count(target) == 2  # both signatures travel
    with target.catalog.reader() as session:
        assert {r.signer for r in session.scalars(select(Signature))} == {keys.fingerprint, stranger.fingerprint}
    from registry.services.signing import verify_model_signature

    assert verify_model_signature(target, REPO, key_path=keys.public, deep=True).signer == keys.fingerprint


def test_a_bundle_whose_signature_was_swapped_is_refused(cli, reg, target, tmp_path, keys):
    from registry.errors import SignatureError
    from registry.services.bundle import export_bundle, import_bundle

    add_registered(reg, make_tiny_repo(tmp_path / "a", big=False), "acme/a")
    add_registered(reg, make_tiny_repo(tmp_path / "b", big=False, seed=5), "acme/b")
    for name in ("acme/a", "acme/b"):
        assert cli("sign", name, "--key", keys.private).exit_code == 0
    bundle = tmp_path / "bundle"
    export_bundle(reg, ["acme/a", "acme/b"], bundle)
    index = json.loads((bundle / "bundle.json").read_text())
    sigs = index["signatures"]
    assert [s["repo"] for s in sigs] == ["acme/a", "acme/b"]
    sigs[0]["bundle"], sigs[1]["bundle"] = sigs[1]["bundle"], sigs[0]["bundle"]
    (bundle / "bundle.json").write_text(json.dumps(index))
    with pytest.raises(SignatureError, match=r"(?s)signatures\[0\].*acme/a@.*swapped for another model's.*nothing was "
                                             r"imported"):
        import_bundle(target, bundle)
    index["signatures"] = [dict(sigs[1], bundle="{not json")]
    (bundle / "bundle.json").write_text(json.dumps(index))
    with pytest.raises(SignatureError, match=r"(?s)signatures\[0\].*not JSON"):
        import_bundle(target, bundle)
    assert model_count(target) == signature_count(target) == 0 and store_files(target) == []


# ---- the mirror ----------------------------------------------------------------------------------------------------

@pytest.mark.hubclient
def test_the_mirror_serves_model_sig_and_hides_untrusted_models(cli, reg, tmp_path, keys, trust):
    folder = make_tiny_repo(tmp_path / "m", big=False)
    commit = add_registered(reg, folder, REPO)
    add_registered(reg, make_tiny_repo(tmp_path / "u", big=False, seed=3), "acme/unsigned")
    assert cli("sign", REPO, "--key", keys.private).exit_code == 0
    with reg.catalog.reader() as session:
        signed = session.scalars(select(Signature)).one().bundle.encode()

    policed = _with_trust(reg, trust)
    with serve(policed) as server:
        assert http("GET", f"{server.url}/api/models/acme/unsigned").status == 404
        info = http("GET", f"{server.url}/api/models/{REPO}?blobs=true").json()
        sibling = next(s for s in info["siblings"] if s["rfilename"] == "model.sig")
        assert sibling["size"] == len(signed) and "lfs" not in sibling
        got = http("GET", f"{server.url}/{REPO}/resolve/main/model.sig")
        assert got.status == 200 and got.body == signed and got.headers["x-repo-commit"] == commit
        part = http("GET", f"{server.url}/{REPO}/resolve/main/model.sig", headers={"Range": "bytes=0-9"})
        assert part.status == 206 and part.body == signed[:10]

        cache = tmp_path / "client-cache"
        script = """
import json
from huggingface_hub import snapshot_download
print(json.dumps({"snapshot": snapshot_download("acme/tiny")}))
"""
        snap = Path(run_client(script, client_env(server.url, cache))["snapshot"])
    assert (snap / "model.sig").read_bytes() == signed
    proc = ms_verify(snap, keys, None, "--allow_symlinks")  # the client's own check of what it downloaded
    assert proc.returncode == 0, proc.stdout + proc.stderr

    with serve(reg) as server:  # no policy: every registered model, and its model.sig when it has one
        assert http("GET", f"{server.url}/api/models/acme/unsigned").status == 200
        assert http("HEAD", f"{server.url}/acme/unsigned/resolve/main/model.sig").status == 404
        assert http("GET", f"{server.url}/{REPO}/resolve/main/model.sig").body == signed
        set_state(reg, REPO, "quarantined", "verify: changed")
        assert http("GET", f"{server.url}/{REPO}/resolve/main/model.sig").status == 404


# ---- pull -----------------------------------------------------------------------------------------------------------

@pytest.mark.hubclient
def test_pull_takes_the_upstream_signature_under_a_policy(cli, reg, target, tmp_path, keys, trust):
    from registry.errors import SignatureError
    from registry.services.pull import pull

    add_registered(reg, make_tiny_repo(tmp_path / "m", big=False), REPO)
    add_registered(reg, make_tiny_repo(tmp_path / "u", big=False, seed=3), "acme/unsigned")
    assert cli("sign", REPO, "--key", keys.private).exit_code == 0
    policed = _with_trust(target, trust)
    with serve(reg) as server:
        with pytest.raises(SignatureError, match=r"(?s)acme/unsigned@.*refused \(pull; nothing was recorded\).*not signed"):
            pull(policed, "acme/unsigned", endpoint=server.url)
        assert model_count(target) == 0
        result = pull(policed, REPO, endpoint=server.url)
    assert result.state == "verified" and signature_count(target) == 1
    from registry.services.signing import verify_model_signature

    assert verify_model_signature(policed, REPO).signer == keys.fingerprint  # by the policy
    with target.catalog.reader() as session:
        assert session.scalars(select(Event).where(Event.action == "signature.pull")).one().subject == REPO
        assert session.scalars(select(Event).where(Event.action == "pull.refused")).one().subject == "acme/unsigned"


# ---- Sigstore keyless bundles made elsewhere --------------------------------------------------------------------

IDENTITY, ISSUER = "stefanb@us.ibm.com", "https://sigstore.verify.ibm.com/oauth2"


@pytest.fixture
def vector(tmp_path):
    """The OMS v1.0 Sigstore test vector, its two files, a manifest naming them, and an offline trust config built
    from the production trusted root that sigstore-python ships (no network)."""
    sigstore = pytest.importorskip("sigstore")
    store = pathlib.Path(sigstore.__file__).parent / "_store" / "https%3A%2F%2Ftuf-repo-cdn.sigstore.dev"
    config = {"mediaType": "application/vnd.dev.sigstore.clienttrustconfig.v0.1+json",
              "trustedRoot": json.loads((store / "trusted_root.json").read_text()),
              "signingConfig": json.loads((store / "signing_config.v0.2.json").read_text())}
    trust_config = tmp_path / "sigstore-trust.json"
    trust_config.write_text(json.dumps(config))
    folder = tmp_path / "v1.1.0-sigstore"
    folder.mkdir()
    for name in ("signme-1", "signme-2"):
        (folder / name).write_text(name)
    manifest = tmp_path / "vector.toml"
    manifest.write_text('name = "acme/vector"\nfamily = "transformers"\n[[component]]\nrole = "config"\n'
                        'files = ["signme-1", "signme-2"]\n')
    return folder, manifest, trust_config, DATA / "oms-v1.0-sigstore.bundle.json"


def test_a_sigstore_bundle_is_checked_offline(cli, reg, tmp_path, vector, keys):
    folder, manifest, trust_config, bundle = vector
    args = ("--identity", IDENTITY, "--issuer", ISSUER, "--trust-config", trust_config)
    r = cli("add", folder, "--name", "acme/vector", "--manifest", manifest, "--signature", bundle, "--identity",
            "someone@else.example", "--issuer", ISSUER, "--trust-config", trust_config)
    assert r.exit_code == 5 and "not signed by someone@else.example" in r.stderr and model_count(reg) == 0
    (folder / "signme-2").write_text("changed")
    r = cli("add", folder, "--name", "acme/vector", "--manifest", manifest, "--signature", bundle, *args)
    assert r.exit_code == 5 and "signme-2: changed after signing" in r.stderr and model_count(reg) == 0
    (folder / "signme-2").write_text("signme-2")
    r = cli("add", folder, "--name", "acme/vector", "--manifest", manifest, "--signature", bundle, *args)
    assert r.exit_code == 0, r.stderr
    with reg.catalog.reader() as session:
        row = session.scalars(select(Signature)).one()
        assert (row.method, row.signer) == ("sigstore", f"{IDENTITY} ({ISSUER})")
    assert cli("verify-signature", "acme/vector", *args, "--deep").exit_code == 0
    assert cli("verify-signature", "acme/vector", "--key", keys.public).exit_code == 5

    set_state(reg, "acme/vector", "registered")
    keyless = tmp_path / "keyless.toml"
    keyless.write_text(f'[[trust]]\nrepos = ["acme/*"]\ntrust_config = "{trust_config.name}"\n'
                       f'sigstore = [{{identity = "{IDENTITY}", issuer = "{ISSUER}"}}]\n')
    out = tmp_path / "out"
    r = cli("deploy", "acme/vector", "--target", out, "--layout", "dir", "--trust", keyless)
    assert r.exit_code == 0, r.stderr
    assert (out / "model.sig").read_bytes() == bundle.read_bytes()
    keys_only = write_trust(tmp_path / "keys-only.toml", [(["acme/*"], [keys.public])])
    r = cli("deploy", "acme/vector", "--target", tmp_path / "out2", "--trust", keys_only)
    assert r.exit_code == 5 and "is not trusted for acme/vector" in r.stderr
