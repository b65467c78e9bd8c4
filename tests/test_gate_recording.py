"""What the gate records (issue 8): the family rule that fired, shown by `registry show`, and digests
that no manifest pinned, taken on first use from the endpoint (real pull against hubsim on 127.0.0.1)."""

from __future__ import annotations

from registry.catalog.queries import find_model
from tests.conftest import make_bert_like
from tests.hubsim import HubSim
from tests.pull_helpers import make_bge_m3, run_cli


def test_pull_records_the_rule_and_the_first_use_digests(reg, tmp_path):
    sim = HubSim()
    folder = make_bge_m3(tmp_path / "m3")
    (folder / "colbert_linear.pt").unlink()  # one head is enough to know the family
    (folder / "colbert_linear.pt").write_bytes(b"\1" * 300)
    sim.add_repo("test-org/renamed-retriever", folder)
    with sim:
        url = sim.url
        r = run_cli("pull", "test-org/renamed-retriever", "--endpoint", url, "--json")
    assert r.exit_code == 0, r.stderr
    out = r.json()
    assert out["family"] == "bge-m3"
    assert out["family_rule"] == "family bge-m3: colbert_linear.pt and sparse_linear.pt present"
    assert "taken on first use from hub:" + url in out["note"]
    with reg.catalog.reader() as session:
        manifest = find_model(session, "test-org/renamed-retriever").manifest
    assert manifest["inference"]["rule"] == "bge-m3-head"
    assert manifest["first_use_source"] == f"hub:{url}"
    assert "test-org/renamed-retriever/model.safetensors" in manifest["first_use"]
    shown = run_cli("show", "test-org/renamed-retriever")
    assert "family bge-m3: colbert_linear.pt and sparse_linear.pt present" in shown.stdout
    assert f"digests taken on first use from hub:{url}" in shown.stdout


def test_a_curated_manifest_that_pins_every_digest_has_no_first_use(cli, minilm_dir):
    out = cli("add", minilm_dir, "--name", "sentence-transformers/all-MiniLM-L6-v2", "--json").json()
    assert out["family_rule"].startswith("family sentence-transformers: curated manifest")
    assert "the files agree: modules.json present" in out["family_rule"]
    shown = cli("show", "sentence-transformers/all-MiniLM-L6-v2", "--json").json()
    assert shown["first_use"] == []


def test_add_of_a_plain_model_names_the_transformers_rule(cli, tmp_path):
    out = cli("add", make_bert_like(tmp_path / "m"), "--name", "acme/plain", "--json").json()
    assert out["family_rule"] == "family transformers: config.json (architectures BertModel)"
    assert out["disagreements"] == []
