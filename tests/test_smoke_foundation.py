from tests.conftest import make_bert_like


def test_add_list_show_verify_roundtrip(cli, tmp_path):
    folder = make_bert_like(tmp_path / "m", shards=2)
    r = cli("add", folder, "--name", "acme/tiny", "--json")
    assert r.exit_code == 0, r.stderr
    added = r.json()
    assert added["state"] == "verified"
    assert {c["role"] for c in added["components"]} == {"weights", "config", "tokenizer"}
    listed = cli("list", "--json").json()["models"]
    assert [m["name"] for m in listed] == ["acme/tiny"]
    shown = cli("show", "acme/tiny", "--json").json()
    assert shown["summary"]["root_digest"] == added["root_digest"]
    v = cli("verify", "--json")
    assert v.exit_code == 0 and v.json()["ok"] is True
