"""The OMS v1.0 format (registry/signing): what we write is what the real model_signing writes and accepts, what it
writes we read, and malformed input of any shape is a SignatureError that names the signature, never a crash."""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path, PurePosixPath

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from registry.errors import SignatureError, UsageError
from registry.signing import oms
from registry.signing.keys import load_private_key, load_public_key
from registry.signing.oms import FileDigests
from tests.sign_helpers import make_keys, ms_sign, ms_verify

TRICKY = {"A": b"1", "a/b": b"2", "a b": b"3", "a-b": b"4", "a.b/c": b"5", "z/y/x.bin": b"6", ".gitattributes": b"7",
          "sub/.gitattributes": b"8", "model.safetensors": b"9" * 100}


def _folder(root: Path, files: dict[str, bytes]) -> Path:
    for name, data in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    return root


def _sha(files: dict[str, bytes]) -> dict[str, str]:
    return {n: hashlib.sha256(d).hexdigest() for n, d in files.items()}


def _statement_of(sig: Path) -> dict:
    return json.loads(base64.b64decode(json.loads(sig.read_bytes())["dsseEnvelope"]["payload"]))


def test_our_signature_is_model_signings(tmp_path):
    """Same files, order, root digest and ignore rules as `model_signing sign key`; and each accepts the other's."""
    keys = make_keys(tmp_path / "keys")
    folder = _folder(tmp_path / "m", TRICKY)
    theirs = tmp_path / "theirs.sig"
    theirs.write_bytes(ms_sign(folder, keys).read_bytes())  # signed as folder/model.sig, which it leaves out
    payload = oms.statement_payload("m", oms.signed_files(_sha(TRICKY)))
    ours = tmp_path / "m" / "model.sig"
    ours.write_bytes(oms.sign_payload(payload, load_private_key(keys.private)))

    a, b = _statement_of(theirs), _statement_of(ours)
    assert a["subject"] == b["subject"]  # root digest and name
    assert a["predicate"]["resources"] == b["predicate"]["resources"]  # names, order, digests
    assert [r["name"] for r in b["predicate"]["resources"]] == ["A", "a/b", "a b", "a-b", "a.b/c", "model.safetensors",
                                                                "sub/.gitattributes", "z/y/x.bin"]
    sa, sb = a["predicate"]["serialization"], b["predicate"]["serialization"]
    assert sorted(sa.pop("ignore_paths")) == sb.pop("ignore_paths")  # model_signing's order comes from a set
    assert sa == sb == {"method": "files", "hash_type": "sha256", "allow_symlinks": False}
    their_doc, our_doc = json.loads(theirs.read_bytes()), json.loads(ours.read_bytes())
    assert their_doc["mediaType"] == our_doc["mediaType"] == oms.BUNDLE_MEDIA_TYPE
    assert their_doc["verificationMaterial"] == our_doc["verificationMaterial"] == {
        "publicKey": {"hint": keys.fingerprint}, "tlogEntries": []}

    proc = ms_verify(folder, keys, ours)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    bundle = oms.parse_bundle(theirs.read_bytes(), "theirs.sig")
    assert oms.verifies(bundle, load_public_key(keys.public))
    statement = oms.parse_statement(bundle.payload_type, bundle.payload, "theirs.sig")
    digests = {n: FileDigests(d, "0" * 64) for n, d in _sha(TRICKY).items()}
    assert oms.compare(statement, digests, exact=True) == ()


def test_p384_keys_interoperate(tmp_path):
    keys = make_keys(tmp_path / "keys", curve=ec.SECP384R1())
    files = {"config.json": b"{}", "w.bin": b"x" * 10}
    folder = _folder(tmp_path / "m", files)
    (folder / "model.sig").write_bytes(oms.sign_payload(oms.statement_payload("m", _sha(files)),
                                                        load_private_key(keys.private)))
    assert ms_verify(folder, keys).returncode == 0


def _good(tmp_path) -> tuple[bytes, object]:
    keys = make_keys(tmp_path / "k")
    data = oms.sign_payload(oms.statement_payload("m", {"a": "00" * 32, "b/c": "11" * 32}),
                            load_private_key(keys.private))
    return data, load_public_key(keys.public)


def test_a_changed_payload_or_signature_does_not_verify(tmp_path):
    data, key = _good(tmp_path)
    doc = json.loads(data)
    payload = base64.b64decode(doc["dsseEnvelope"]["payload"]).replace(b'"a"', b'"x"')
    doc["dsseEnvelope"]["payload"] = base64.b64encode(payload).decode()
    assert not oms.verifies(oms.parse_bundle(json.dumps(doc).encode(), "t"), key)
    other = make_keys(tmp_path / "other")
    assert not oms.verifies(oms.parse_bundle(data, "t"), load_public_key(other.public))
    assert oms.verifies(oms.parse_bundle(data, "t"), key)


@pytest.mark.parametrize("mutate, message", [
    (lambda d: d[: len(d) // 2], "not JSON"),
    (lambda d: b"", "not JSON"),
    (lambda d: b"\xff\xfe", "not JSON"),
    (lambda d: b"[1, 2]", "the bundle is missing or not an object"),
    (lambda d: d.replace(b"sigstore.bundle.v0.3", b"something.else"), "not a Sigstore bundle"),
    (lambda d: d.replace(b'"publicKey"', b'"nothing"'), "no public key or certificate"),
    (lambda d: d.replace(b'"dsseEnvelope"', b'"messageSignature"'), "no dsseEnvelope"),
    (lambda d: d.replace(b'"payload":"', b'"payload":"!!'), "not valid base64"),
    (lambda d: d.replace(b'"hint":"', b'"hint":"zz'), "not a sha256 fingerprint"),
])
def test_malformed_bundles_name_the_signature(tmp_path, mutate, message):
    data, _ = _good(tmp_path)
    with pytest.raises(SignatureError, match=message) as info:
        oms.parse_bundle(mutate(data), "acme/x model.sig")
    assert info.value.message.startswith("acme/x model.sig: ")


def _statement(**changes) -> bytes:
    doc = json.loads(oms.statement_payload("m", {"a": "00" * 32, "b": "11" * 32}))
    for path, value in changes.items():
        target = doc
        keys = path.split(".")
        for k in keys[:-1]:
            target = target[int(k)] if isinstance(target, list) else target[k]
        if value is None:
            del target[keys[-1]]
        elif isinstance(target, list):
            target[int(keys[-1])] = value
        else:
            target[keys[-1]] = value
    return json.dumps(doc).encode()


@pytest.mark.parametrize("changes, message", [
    ({"_type": "x"}, "not an in-toto statement"),
    ({"predicateType": oms.PREDICATE_TYPE_V01}, "deprecated v0.1"),
    ({"predicateType": "https://example/x"}, "predicateType"),
    ({"subject": []}, "exactly one subject"),
    ({"subject.0.digest": {}}, "no sha256 root digest"),
    ({"predicate.serialization.method": "shards"}, "'files' method"),
    ({"predicate.serialization.hash_type": "blake2"}, "hash_type 'blake2'"),
    ({"predicate.serialization.ignore_paths": ["../up"]}, "unsafe path"),
    ({"predicate.resources": []}, "at least one file"),
    ({"predicate.resources.0.name": "../etc/passwd"}, r"unsafe path: '\.\./etc/passwd'"),
    ({"predicate.resources.0.name": "/abs"}, "unsafe path"),
    ({"predicate.resources.0.name": "b"}, "listed twice"),
    ({"predicate.resources.0.algorithm": "blake3"}, "algorithm 'blake3' differs"),
    ({"predicate.resources.0.digest": "AB" * 32}, "not 64 lowercase hex"),
    ({"predicate.resources.0.digest": "22" * 32}, "tampered"),
])
def test_malformed_statements_are_refused(changes, message):
    with pytest.raises(SignatureError, match=message):
        oms.parse_statement(oms.PAYLOAD_TYPE, _statement(**changes), "sig")


def test_compare_names_each_difference():
    statement = oms.parse_statement(oms.PAYLOAD_TYPE, oms.statement_payload("m", {"a": "00" * 32, "b": "11" * 32}), "s")
    files = {"a": FileDigests("22" * 32, "0" * 64), "c": FileDigests("33" * 32, "0" * 64),
             ".gitattributes": FileDigests("44" * 32, "0" * 64)}
    problems = oms.compare(statement, files, exact=True)
    assert [p.split(":")[0] for p in problems] == ["a", "b", "c"]
    assert "changed after signing" in problems[0] and "not among the model's files" in problems[1]
    assert "not signed" in problems[2]
    # covering only asks for the files given
    assert oms.compare(statement, {"a": FileDigests("00" * 32, "0" * 64)}, exact=False) == ()


def test_a_files_ignored_by_the_signature_is_not_excused():
    doc = json.loads(oms.statement_payload("m", {"a": "00" * 32}))
    doc["predicate"]["serialization"]["ignore_paths"].append("config.json")
    statement = oms.parse_statement(oms.PAYLOAD_TYPE, json.dumps(doc).encode(), "s")
    problems = oms.compare(statement, {"a": FileDigests("00" * 32, ""), "config.json": FileDigests("11" * 32, "")},
                           exact=True)
    assert problems == ("config.json: in the model, but the signature ignores it (ignore_paths): it is unsigned",)


# ---- keys ---------------------------------------------------------------------------------------------

def test_key_files_that_are_not_usable_keys(tmp_path):
    keys = make_keys(tmp_path)
    with pytest.raises(UsageError, match="no such file"):
        load_public_key(tmp_path / "absent.pub")
    with pytest.raises(UsageError, match="that is a private key"):
        load_public_key(keys.private)
    with pytest.raises(UsageError, match="that is a public key"):
        load_private_key(keys.public)
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    (tmp_path / "rsa.pub").write_bytes(rsa_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    with pytest.raises(UsageError, match="not an ECDSA key"):
        load_public_key(tmp_path / "rsa.pub")
    odd = ec.generate_private_key(ec.SECP256K1())
    (tmp_path / "k1.pem").write_bytes(odd.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                        serialization.NoEncryption()))
    with pytest.raises(UsageError, match="curve secp256k1 is not one model_signing accepts"):
        load_private_key(tmp_path / "k1.pem")
    locked = ec.generate_private_key(ec.SECP256R1())
    (tmp_path / "locked.pem").write_bytes(locked.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.BestAvailableEncryption(b"pw")))
    with pytest.raises(UsageError, match="encrypted"):
        load_private_key(tmp_path / "locked.pem")
    assert load_private_key(tmp_path / "locked.pem", b"pw").public.fingerprint
    (tmp_path / "junk.pub").write_text("-----BEGIN PUBLIC KEY-----\nnot base64\n-----END PUBLIC KEY-----\n")
    with pytest.raises(UsageError, match="not a PEM public key"):
        load_public_key(tmp_path / "junk.pub")


# ---- properties and fuzzing ----------------------------------------------------------------------------

segment = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs", "Cc"), exclude_characters="/\\"),
                  min_size=1, max_size=6).filter(lambda s: s not in (".", ".."))
paths = st.lists(st.lists(segment, min_size=1, max_size=3).map("/".join), min_size=1, max_size=12, unique=True)


@given(paths)
def test_resource_order_is_model_signings(names):
    """model_signing sorts its manifest by PurePosixPath (manifest.py), i.e. by path components."""
    assert sorted(names, key=oms.sort_key) == [str(p) for p in sorted(PurePosixPath(n) for n in names)]


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture], max_examples=300)
@given(st.binary(max_size=300) | st.from_regex(rb'\{"mediaType":.{0,200}', fullmatch=True))
def test_fuzz_parse_bundle_raises_only_signature_errors(data):
    try:
        oms.parse_bundle(data, "fuzz")
    except SignatureError as exc:
        assert exc.message.startswith("fuzz: ")


json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=20),
                           lambda children: st.lists(children, max_size=4)
                           | st.dictionaries(st.text(max_size=12), children, max_size=4), max_leaves=20)


@settings(max_examples=300)
@given(json_values, st.sampled_from(["_type", "subject", "predicateType", "predicate", "predicate.resources",
                                     "predicate.serialization", "predicate.resources.0", "predicate.resources.0.name",
                                     "subject.0.digest", "predicate.serialization.ignore_paths"]))
def test_fuzz_parse_statement_raises_only_signature_errors(value, where):
    try:
        payload = _statement(**{where: value if value is not None else 0})
    except (KeyError, IndexError, TypeError, ValueError):
        return  # the mutation does not apply to this shape
    try:
        oms.parse_statement(oms.PAYLOAD_TYPE, payload, "fuzz")
    except SignatureError as exc:
        assert exc.message.startswith("fuzz: ")
