"""The parsers that read what a registry (or a user) hands us: OCI references, ModelPack manifests, records.
Examples first, then hypothesis: any text either parses into a reference that round-trips, or is refused
with UsageError; any bytes as a manifest are refused with our own errors, never a traceback."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from registry.errors import IntegrityError, RegistryError, UsageError
from registry.oci import modelpack
from registry.oci.reference import is_loopback, parse_reference

SHA = "sha256:" + "ab" * 32


@pytest.mark.parametrize("text, host, repo, tag, digest", [
    ("oci://127.0.0.1:5000/models/minilm:v1", "127.0.0.1:5000", "models/minilm", "v1", None),
    ("oci://localhost/a", "localhost", "a", None, None),
    (f"oci://ghcr.io/org/sub/model@{SHA}", "ghcr.io", "org/sub/model", None, SHA),
    (f"oci://[::1]:5000/m:t@{SHA}", "[::1]:5000", "m", "t", SHA),
    ("oci://reg.example.com:443/a.b_c__d-e/f--g:V1.0-rc_1", "reg.example.com:443", "a.b_c__d-e/f--g", "V1.0-rc_1", None),
])
def test_good_references(text, host, repo, tag, digest):
    ref = parse_reference(text)
    assert (ref.host, ref.repository, ref.tag, ref.digest) == (host, repo, tag, digest)
    assert parse_reference(str(ref)).reference == ref.reference


@pytest.mark.parametrize("text, words", [
    ("docker://a/b", "oci://"), ("oci://", "host"), ("oci://host", "repository is missing"),
    ("oci://host/", "repository is missing"), ("oci://host/UPPER", "repository component"),
    ("oci://host/a//b", "repository component"), ("oci://host/a:-bad", "tag"), ("oci://host/a@sha256:abc", "sha256"),
    ("oci://host/a@md5:" + "0" * 32, "sha256"), ("oci://host:99999/a", "port"), ("oci://ho st/a", "whitespace"),
    ("oci://-host/a", "host"), ("oci://[zz::1]/a", "host"), ("oci://[1::2::3]/a", "IPv6"), ("oci://h/" + "a" * 300, "255"),
    ("oci://h/a:" + "t" * 129, "tag"), ("oci://h/a\n", "control"),
])
def test_bad_references(text, words):
    with pytest.raises(UsageError) as err:
        parse_reference(text)
    assert words in err.value.message


def test_loopback():
    assert is_loopback("127.0.0.1") and is_loopback("127.8.9.10") and is_loopback("::1") and is_loopback("LOCALHOST")
    assert not is_loopback("10.0.0.1") and not is_loopback("registry.example") and not is_loopback("0.0.0.0")


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(st.text(max_size=80).map(lambda t: "oci://" + t) | st.text(max_size=80))
def test_fuzz_references(text):
    try:
        ref = parse_reference(text)
    except UsageError as exc:
        assert exc.message and "oci://HOST" in exc.message
        return
    again = parse_reference(str(ref))
    assert (again.host, again.repository, again.reference) == (ref.host, ref.repository, ref.reference)


def _manifest(**change) -> dict:
    base = {"schemaVersion": 2, "mediaType": modelpack.MANIFEST_V1, "artifactType": modelpack.ARTIFACT_TYPE,
            "config": {"mediaType": modelpack.CONFIG_TYPE, "digest": SHA, "size": 10},
            "layers": [{"mediaType": modelpack.WEIGHT, "digest": SHA, "size": 5,
                        "annotations": {modelpack.ANNOTATION_FILEPATH: "model.safetensors"}}]}
    base.update(change)
    return base


def test_parse_manifest_examples():
    got = modelpack.parse_manifest(json.dumps(_manifest()).encode(), "", "x")
    assert list(got.files) == ["model.safetensors"] and got.record is None and got.dependencies == ()
    bad = [
        (_manifest(schemaVersion=1), IntegrityError, "schemaVersion"),
        (_manifest(artifactType=None, config={"mediaType": "application/vnd.oci.image.config.v1+json", "digest": SHA,
                                              "size": 1}), UsageError, "container image"),
        (_manifest(config={"mediaType": "application/vnd.oci.image.config.v1+json", "digest": SHA, "size": 1}),
         IntegrityError, "config media type"),
        (_manifest(layers=[{"mediaType": modelpack.WEIGHT, "digest": SHA, "size": -1}]), IntegrityError, "size"),
        (_manifest(layers=[{"mediaType": modelpack.WEIGHT, "digest": "sha512:" + "a" * 128, "size": 1}]),
         IntegrityError, "sha256"),
        (_manifest(layers=[{"mediaType": modelpack.WEIGHT, "digest": SHA, "size": 1}]), IntegrityError, "filepath"),
        (_manifest(layers=[{"mediaType": modelpack.WEIGHT, "digest": SHA, "size": 1, "annotations": {
            modelpack.ANNOTATION_FILEPATH: "a"}}] * 2), IntegrityError, "twice"),
        (_manifest(annotations={modelpack.ANNOTATION_DEPENDENCIES: "[{]"}), IntegrityError, "malformed"),
        (_manifest(annotations={modelpack.ANNOTATION_DEPENDENCIES: json.dumps(
            [{"repo": "a/b", "commit": "nothex", "digest": SHA}])}), IntegrityError, "40 hex"),
        ({"mediaType": modelpack.INDEX_V1, "manifests": []}, UsageError, "image index"),
    ]
    for manifest, error, words in bad:
        with pytest.raises(error, match=words):
            modelpack.parse_manifest(json.dumps(manifest).encode(), "", "x")


json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=20),
                           lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner,
                                                                                         max_size=4), max_leaves=20)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(st.one_of(
    st.binary(max_size=200),
    json_values.map(lambda v: json.dumps(v).encode()),
    st.dictionaries(st.sampled_from(["schemaVersion", "mediaType", "artifactType", "config", "layers", "annotations"]),
                    json_values, max_size=6).map(lambda d: json.dumps({**_manifest(), **d}).encode()),
))
def test_fuzz_manifests_and_records(body):
    for parse in (lambda: modelpack.parse_manifest(body, modelpack.MANIFEST_V1, "x"),
                  lambda: modelpack.read_record(body, "x")):
        try:
            parse()
        except RegistryError as exc:
            assert exc.message
