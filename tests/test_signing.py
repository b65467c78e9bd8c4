"""``registry sign`` / ``verify-signature`` / ``add --signature`` / ``deploy`` with model.sig, on SQLite and Postgres,
proven against the real model_signing CLI both ways; every bad input is refused naming the file or key, and leaves
nothing recorded."""

from __future__ import annotations

import base64
import json
import os
import shutil
from pathlib import Path

import pytest
from sqlalchemy import select

from registry.catalog.models import Event, Signature
from registry.signing import oms
from registry.signing.keys import load_private_key
from tests.add_helpers import store_files
from tests.conftest import make_bert_like
from tests.serve_helpers import add_registered, make_tiny_repo, set_state
from tests.sign_helpers import make_keys, model_count, ms_sign, ms_verify, signature_count

REPO = "acme/tiny"


@pytest.fixture
def keys(tmp_path):
    return make_keys(tmp_path / "keys")


def _events(reg, action: str) -> list[Event]:
    with reg.catalog.reader() as session:
        return list(session.scalars(select(Event).where(Event.action == action)))


def test_sign_and_model_signing_verifies_what_deploy_writes(cli, reg, tmp_path, keys):
    folder = make_tiny_repo(tmp_path / "m", big=False)
    commit = add_registered(reg, folder, REPO)
    r = cli("sign", REPO, "--key", keys.private, "--output", tmp_path / "out" / "model.sig", "--json")
    assert r.exit_code == 0, r.stderr
    out = r.json()
    assert out["signer"] == keys.fingerprint and out["files"] == 6 and out["replaced"] is False
    assert (tmp_path / "out" / "model.sig").is_file()
    assert [e.details["signer"] for e in _events(reg, "sign")] == [keys.fingerprint]

    r = cli("verify-signature", REPO, "--key", keys.public, "--deep", "--json")
    assert r.exit_code == 0, r.stderr
    assert r.json()["ok"] is True and r.json()["blobs_hashed"] == 6 and r.json()["root_digest"] == out["root_digest"]

    plain = tmp_path / "plain"
    r = cli("deploy", REPO, "--target", plain, "--layout", "dir", "--json")
    assert r.exit_code == 0, r.stderr
    assert r.json()["signed"] == [f"{REPO}@{commit}"]
    assert (plain / "model.sig").read_bytes() == (tmp_path / "out" / "model.sig").read_bytes()
    proc = ms_verify(plain, keys)
    assert proc.returncode == 0, proc.stdout + proc.stderr

    cache = tmp_path / "cache"
    r = cli("deploy", REPO, "--target", cache, "--json")
    assert r.exit_code == 0, r.stderr
    snap = Path(r.json()["path"])
    assert (snap / "model.sig").is_symlink()  # as huggingface_hub stores a small file: a link into blobs/
    # snapshot files are links into blobs/: model_signing follows them only when told to
    proc = ms_verify(snap, keys, None, "--allow_symlinks")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert cli("audit", "--json").json()["ok"] is True

    # a file changed in the deployed folder is caught by model_signing, and re-signing replaces the signature
    victim = plain / "vocab.txt"
    victim.unlink()
    victim.write_text("changed\n")
    proc = ms_verify(plain, keys)
    assert proc.returncode != 0 and "vocab.txt" in proc.stderr
    again = cli("sign", REPO, "--key", keys.private, "--json")
    assert again.exit_code == 0 and again.json()["replaced"] is True and signature_count(reg) == 1


def test_a_model_signing_signature_is_checked_added_and_deployed_as_is(cli, reg, tmp_path, keys):
    folder = make_bert_like(tmp_path / "m")
    sig = ms_sign(folder, keys)
    r = cli("add", folder, "--name", REPO, "--signature", sig, "--key", keys.public, "--json")
    assert r.exit_code == 0, r.stderr
    assert "signature" in r.stderr and keys.fingerprint[:16] in r.stderr
    with reg.catalog.reader() as session:
        row = session.scalars(select(Signature)).one()
        assert (row.method, row.signer, row.bundle.encode(), row.files) == ("key", keys.fingerprint, sig.read_bytes(), 4)
    assert cli("verify-signature", REPO, "--key", keys.public, "--deep").exit_code == 0
    set_state(reg, REPO, "registered")
    target = tmp_path / "plain"
    assert cli("deploy", REPO, "--target", target, "--layout", "dir").exit_code == 0
    assert (target / "model.sig").read_bytes() == sig.read_bytes()
    assert ms_verify(target, keys).returncode == 0


def test_a_signature_that_ignores_extra_files_is_accepted(cli, reg, tmp_path, keys):
    """A folder with files the manifest does not keep: signed with --ignore-paths for them, it is accepted."""
    folder = make_bert_like(tmp_path / "m")
    (folder / "README.md").write_text("# tiny\n")
    (folder / ".gitattributes").write_text("*.safetensors filter=lfs\n")
    sig = ms_sign(folder, keys, None, "--ignore-paths", folder / "README.md")
    r = cli("add", folder, "--name", REPO, "--signature", sig, "--key", keys.public)
    assert r.exit_code == 0, r.stderr
    assert signature_count(reg) == 1


# ---- bad input ------------------------------------------------------------------------------------------

def _change(folder: Path) -> None:
    (folder / "vocab.txt").write_text("[PAD]\n[UNK]\nchanged\n")


def _add_file(folder: Path) -> None:
    (folder / "generation_config.json").write_text("{}")


def _remove(folder: Path) -> None:
    (folder / "tokenizer_config.json").unlink()
    (folder / "special_tokens_map.json").write_text("{}")  # still a complete model, with other files


def _rename(folder: Path) -> None:
    os.rename(folder / "tokenizer_config.json", folder / "special_tokens_map.json")


@pytest.mark.parametrize("after_signing, named", [
    (_change, "vocab.txt: changed after signing"),
    (_add_file, "generation_config.json: in the model, but not signed"),
    (_remove, "tokenizer_config.json: signed, but not among the model's files"),
    (_rename, "special_tokens_map.json: in the model, but not signed"),
])
def test_a_folder_changed_after_signing_is_refused(cli, reg, tmp_path, keys, after_signing, named):
    folder = make_bert_like(tmp_path / "m")
    sig = ms_sign(folder, keys, tmp_path / "model.sig")
    after_signing(folder)
    r = cli("add", folder, "--name", REPO, "--signature", sig, "--key", keys.public)
    assert r.exit_code == 5, r.stderr
    assert named in r.stderr and str(sig) in r.stderr and "Traceback" not in r.stderr
    assert model_count(reg) == signature_count(reg) == 0 and store_files(reg) == []
    assert len(_events(reg, "add.refused")) == 1


def _signed_statement(keys, statement: dict) -> bytes:
    return oms.sign_payload(json.dumps(statement).encode(), load_private_key(keys.private))


def test_bad_signature_files_are_refused_and_nothing_is_recorded(cli, reg, tmp_path, keys):
    folder = make_bert_like(tmp_path / "m")
    sig = ms_sign(folder, keys, tmp_path / "model.sig")
    other_model = make_bert_like(tmp_path / "other", hidden=4, seed=7)
    other_sig = ms_sign(other_model, keys, tmp_path / "other.sig")
    stranger = make_keys(tmp_path / "stranger", "stranger")
    truncated = tmp_path / "truncated.sig"
    truncated.write_bytes(sig.read_bytes()[:200])
    not_json = tmp_path / "notjson.sig"
    not_json.write_text("this is not a signature\n")
    statement = json.loads(base64.b64decode(json.loads(sig.read_bytes())["dsseEnvelope"]["payload"]))
    statement["predicate"]["resources"][0]["name"] = "../outside.json"
    dotdot = tmp_path / "dotdot.sig"
    dotdot.write_bytes(_signed_statement(keys, statement))
    forged = json.loads(sig.read_bytes())
    forged["dsseEnvelope"]["payload"] = base64.b64encode(json.dumps(statement).encode()).decode()
    tampered = tmp_path / "tampered.sig"
    tampered.write_text(json.dumps(forged))

    cases = [
        (other_sig, keys.public, 5, "does not match acme/tiny"),
        (sig, stranger.public, 5, f"not by {stranger.fingerprint[:16]}"),
        (truncated, keys.public, 5, "truncated"),
        (not_json, keys.public, 5, "not JSON"),
        (dotdot, keys.public, 5, "unsafe path: '../outside.json'"),
        (tampered, keys.public, 5, "does not verify"),
        (tmp_path / "absent.sig", keys.public, 2, "no such file"),
        (sig, keys.private, 2, "that is a private key"),
    ]
    for path, key, code, message in cases:
        r = cli("add", folder, "--name", REPO, "--signature", path, "--key", key)
        assert r.exit_code == code, (path, r.stderr)
        named = key if code == 2 and path.exists() else path  # the file that is wrong: the key, or the signature
        assert message in r.stderr and str(named) in r.stderr and "Traceback" not in r.stderr, (path, r.stderr)
    assert cli("add", folder, "--name", REPO, "--signature", sig).exit_code == 2  # no signer given
    assert cli("add", folder, "--name", REPO, "--key", keys.public).exit_code == 2  # a key without a signature
    assert model_count(reg) == signature_count(reg) == 0 and store_files(reg) == []


def test_sign_refuses_what_cannot_be_signed(cli, reg, tmp_path, keys):
    assert cli("sign", "acme/none", "--key", keys.private).exit_code == 3
    folder = make_tiny_repo(tmp_path / "m", big=False)
    add_registered(reg, folder, REPO)
    r = cli("sign", REPO, "--key", keys.public)
    assert r.exit_code == 2 and "that is a public key" in r.stderr
    r = cli("sign", REPO, "--key", tmp_path / "nope.pem")
    assert r.exit_code == 2 and "no such file" in r.stderr
    r = cli("sign", REPO, "--key", keys.private, "--output", tmp_path)
    assert r.exit_code == 2 and "is a folder" in r.stderr
    set_state(reg, REPO, "quarantined", "verify: changed")
    r = cli("sign", REPO, "--key", keys.private)
    assert r.exit_code == 9 and "quarantined" in r.stderr
    assert signature_count(reg) == 0

    own = tmp_path / "own"
    make_bert_like(own)
    (own / "model.sig").write_text("{}")
    manifest = tmp_path / "manifest.toml"
    manifest.write_text('name = "acme/own"\nfamily = "transformers"\n[[component]]\nrole = "config"\n'
                        'files = ["config.json", "model.sig"]\n[[component]]\nrole = "weights"\n'
                        'files = ["model.safetensors"]\n')
    assert cli("add", own, "--name", "acme/own", "--manifest", manifest).exit_code == 0
    r = cli("sign", "acme/own", "--key", keys.private)
    assert r.exit_code == 9 and "a file of its own named model.sig" in r.stderr


def test_verify_signature_names_what_does_not_match(cli, reg, tmp_path, keys):
    folder = make_tiny_repo(tmp_path / "m", big=False)
    add_registered(reg, folder, REPO)
    r = cli("verify-signature", REPO, "--key", keys.public)
    assert r.exit_code == 5 and "no signature by" in r.stderr and keys.fingerprint[:16] in r.stderr
    assert cli("verify-signature", REPO).exit_code == 2  # whose signature? no key, no policy
    assert cli("sign", REPO, "--key", keys.private).exit_code == 0
    other = make_keys(tmp_path / "other", "other")
    r = cli("verify-signature", REPO, "--key", other.public)
    assert r.exit_code == 5 and f"no signature by {other.fingerprint[:16]}" in r.stderr

    # the store's bytes changed: the fast check (catalog digests) still passes, --deep names the file
    sha = next(f for f in reg.store.iter_blobs() if reg.store.path_for(f[0]).read_bytes() == (folder / "vocab.txt").read_bytes())[0]
    blob = reg.store.path_for(sha)
    blob.chmod(0o644)
    blob.write_text("[PAD]\n[UNK]\n[CLS]\n[SEP]\nhello\nWORLD\n")
    assert cli("verify-signature", REPO, "--key", keys.public).exit_code == 0
    r = cli("verify-signature", REPO, "--key", keys.public, "--deep")
    assert r.exit_code == 5 and "vocab.txt: the stored bytes hash to sha256" in r.stderr

    # a signature row whose bytes were altered in the catalog no longer verifies
    with reg.catalog.session() as session:
        row = session.scalars(select(Signature)).one()
        doc = json.loads(row.bundle)
        payload = base64.b64decode(doc["dsseEnvelope"]["payload"]).replace(b'"tiny"', b'"evil"')
        doc["dsseEnvelope"]["payload"] = base64.b64encode(payload).decode()
        row.bundle = json.dumps(doc)
    r = cli("verify-signature", REPO, "--key", keys.public)
    assert r.exit_code == 5 and "does not verify" in r.stderr


def test_deploy_of_an_unsigned_model_writes_no_model_sig(cli, reg, tmp_path):
    folder = make_tiny_repo(tmp_path / "m", big=False)
    add_registered(reg, folder, REPO)
    target = tmp_path / "plain"
    r = cli("deploy", REPO, "--target", target, "--layout", "dir", "--json")
    assert r.exit_code == 0 and r.json()["signed"] == [] and not (target / "model.sig").exists()
    shutil.rmtree(target)


def test_the_python_api(reg, tmp_path, keys):
    import registry
    from registry.errors import SignatureError

    add_registered(reg, make_tiny_repo(tmp_path / "m", big=False), REPO)
    signed = registry.sign(REPO, keys.private, registry=reg)
    checked = registry.verify_signature(REPO, key=keys.public, deep=True, registry=reg)
    assert (checked.signer, checked.root_digest, checked.blobs_hashed) == (keys.fingerprint, signed.root_digest, 6)
    with pytest.raises(SignatureError, match="no signature by"):
        registry.verify_signature(REPO, key=make_keys(tmp_path / "o", "o").public, registry=reg)


def test_an_encrypted_key_takes_its_password_from_the_environment(cli, reg, tmp_path, monkeypatch):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    add_registered(reg, make_tiny_repo(tmp_path / "m", big=False), REPO)
    key = tmp_path / "locked.pem"
    key.write_bytes(ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.BestAvailableEncryption(b"s3cret")))
    r = cli("sign", REPO, "--key", key)
    assert r.exit_code == 2 and "encrypted" in r.stderr and "REGISTRY_KEY_PASSWORD" in r.stderr
    monkeypatch.setenv("REGISTRY_KEY_PASSWORD", "wrong")
    assert cli("sign", REPO, "--key", key).exit_code == 2
    monkeypatch.setenv("REGISTRY_KEY_PASSWORD", "s3cret")
    assert cli("sign", REPO, "--key", key).exit_code == 0 and signature_count(reg) == 1
