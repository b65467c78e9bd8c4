"""Signatures travel through an OCI registry in the model's record layer, and a trust policy holds on `pull oci://`
as on every other way in (issue 13): the real CNCF distribution registry, real keys, SQLite and Postgres."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from registry.catalog.models import Signature
from registry.errors import SignatureError
from registry.services.oci_pull import pull_oci
from registry.services.oci_push import push_model
from registry.services.signing import sign_model
from tests.pull_helpers import catalog_counts
from tests.sign_helpers import make_keys, write_trust
from tests.test_oci import oci  # noqa: F401  (fixture)
from tests.test_trust import _with_trust


@pytest.fixture
def signed(reg, tmp_path):
    from tests.serve_helpers import add_registered, make_tiny_repo
    add_registered(reg, make_tiny_repo(tmp_path / "m", big=False), "acme/tiny")
    keys = make_keys(tmp_path / "keys", "release")
    sign_model(reg, "acme/tiny", keys.private)
    return reg, keys


def _signers(registry) -> list[str]:
    with registry.catalog.reader() as session:
        return sorted(session.scalars(select(Signature.signer)))


def test_a_pushed_signature_is_pulled_and_recorded(signed, oci, target):
    source, keys = signed
    push_model(source, "acme/tiny", oci.ref("models/tiny"), insecure=True)
    pull_oci(target, oci.ref("models/tiny"), insecure=True)
    assert _signers(target) == [keys.fingerprint] == _signers(source)


def test_a_trust_policy_holds_on_oci_pull(signed, oci, target, tmp_path):
    source, keys = signed
    push_model(source, "acme/tiny", oci.ref("models/tiny"), insecure=True)
    stranger = make_keys(tmp_path / "keys", "stranger")
    before = catalog_counts(target)
    untrusting = _with_trust(target, write_trust(tmp_path / "stranger.toml", [(["acme/*"], [stranger.public])]))
    with pytest.raises(SignatureError, match=r"(?s)acme/tiny@.*OCI pull; nothing was recorded.*not trusted"):
        pull_oci(untrusting, oci.ref("models/tiny"), insecure=True)
    assert catalog_counts(target) == before and not list(target.store.root.rglob("*.partial"))
    trusting = _with_trust(target, write_trust(tmp_path / "release.toml", [(["acme/*"], [keys.public])]))
    assert pull_oci(trusting, oci.ref("models/tiny"), insecure=True).state == "verified"
    assert _signers(target) == [keys.fingerprint]


def test_an_unsigned_model_is_refused_under_a_policy(reg, oci, target, tmp_path):
    from tests.serve_helpers import add_registered, make_tiny_repo
    add_registered(reg, make_tiny_repo(tmp_path / "m", big=False), "acme/tiny")
    push_model(reg, "acme/tiny", oci.ref("models/tiny"), insecure=True)
    keys = make_keys(tmp_path / "keys", "release")
    trusting = _with_trust(target, write_trust(tmp_path / "release.toml", [(["acme/*"], [keys.public])]))
    with pytest.raises(SignatureError, match="not signed"):
        pull_oci(trusting, oci.ref("models/tiny"), insecure=True)
    assert catalog_counts(target)["models"] == 0
