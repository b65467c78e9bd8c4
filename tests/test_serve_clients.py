"""The real clients, unmodified, pointed at the mirror through HF_ENDPOINT (each in a fresh interpreter, since
huggingface_hub reads HF_ENDPOINT at import), with hf-xet installed and HF_HUB_DISABLE_XET unset, so any Xet
metadata leaking out would send them to Xet. The protocol itself is checked on both databases in
test_serve_protocol.py; here one catalog (SQLite) is enough."""

from __future__ import annotations

import hashlib
import re
import subprocess
import sys
from pathlib import Path

import pytest

from registry.server import TokenPolicy
from tests.serve_helpers import add_registered, client_env, make_tiny_repo, run_client, serve


@pytest.fixture
def database_url(tmp_path):
    return f"sqlite:///{tmp_path / 'home' / 'catalog.db'}"


HUB_SCRIPT = """
import json, os
import hf_xet  # installed on purpose: a leaked xetHash or X-Xet-* header would route downloads to it
import huggingface_hub
from huggingface_hub import HfApi, file_exists, hf_hub_download, snapshot_download
from huggingface_hub.errors import EntryNotFoundError, RepositoryNotFoundError, RevisionNotFoundError

api = HfApi()
out = {"version": huggingface_hub.__version__}
snap = snapshot_download("acme/tiny")
out["snapshot"] = snap
out["files"] = sorted(os.path.relpath(os.path.join(d, f), snap) for d, _, fs in os.walk(snap) for f in fs)
out["pooling"] = open(hf_hub_download("acme/tiny", "1_Pooling/config.json")).read()
info = api.model_info("acme/tiny", files_metadata=True)
out["lfs"] = {s.rfilename: s.lfs.sha256 for s in info.siblings if s.lfs}
out["listed"] = sorted(api.list_repo_files("acme/tiny"))
out["branches"] = {b.name: b.target_commit for b in api.list_repo_refs("acme/tiny").branches}
out["paths_info"] = sorted(e.path for e in api.get_paths_info("acme/tiny", ["config.json", "1_Pooling", "zzz"]))
out["exists"] = [file_exists("acme/tiny", "config.json"), file_exists("acme/tiny", "nope.json")]
out["tensors"] = sorted(api.get_safetensors_metadata("acme/tiny").files_metadata["model.safetensors"].tensors)
errors = {}
for label, call in [("repo", lambda: hf_hub_download("acme/absent", "config.json")),
                    ("revision", lambda: hf_hub_download("acme/tiny", "config.json", revision="v404")),
                    ("entry", lambda: hf_hub_download("acme/tiny", "nope.json"))]:
    try:
        call()
        errors[label] = "no error"
    except (RepositoryNotFoundError, RevisionNotFoundError, EntryNotFoundError) as exc:
        errors[label] = next(c.__name__ for c in (EntryNotFoundError, RevisionNotFoundError, RepositoryNotFoundError)
                             if isinstance(exc, c))
out["errors"] = errors
print(json.dumps(out))
"""


@pytest.mark.hubclient
def test_huggingface_hub_against_the_mirror(reg, tmp_path):
    folder = make_tiny_repo(tmp_path / "tiny")
    commit = add_registered(reg, folder, "acme/tiny")
    cache = tmp_path / "hf-cache"
    with serve(reg) as server:
        env = client_env(server.url, cache)
        out = run_client(HUB_SCRIPT, env)
        expected = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
        assert out["files"] == out["listed"] == expected
        assert Path(out["snapshot"]).name == commit
        for rel in expected:
            assert (Path(out["snapshot"]) / rel).read_bytes() == (folder / rel).read_bytes(), rel
        assert out["lfs"] == {"model.safetensors": hashlib.sha256((folder / "model.safetensors").read_bytes()).hexdigest()}
        assert out["branches"] == {"main": commit}
        assert out["paths_info"] == ["1_Pooling", "config.json"]
        assert out["exists"] == [True, False]
        assert out["tensors"] == ["layer.0.weight", "layer.1.weight"]
        assert out["errors"] == {"repo": "RepositoryNotFoundError", "revision": "RevisionNotFoundError",
                                 "entry": "EntryNotFoundError"}
        # The classic cache layout: blobs named by etag; Xet's shared store would add <2hex>/ folders.
        blobs = cache / "models--acme--tiny" / "blobs"
        assert all(re.fullmatch(r"[0-9a-f]{40}|[0-9a-f]{64}", p.name) and p.is_file() for p in blobs.iterdir())
        assert not any("unknown" in k for k in server.app.stats), server.app.stats  # no xet-read-token, no odd routes

        hf = str(Path(sys.executable).parent / "hf")
        verify = subprocess.run([hf, "cache", "verify", "acme/tiny", "--cache-dir", str(cache)], env=env,
                                capture_output=True, text=True, timeout=120)
        assert verify.returncode == 0, verify.stdout + verify.stderr
        # Same size, different bytes: verify must catch it against the mirror's tree oids.
        blob = blobs / hashlib.sha256((folder / "model.safetensors").read_bytes()).hexdigest()
        data = bytearray(blob.read_bytes())
        data[-1] ^= 0xFF
        blob.chmod(0o644)
        blob.write_bytes(bytes(data))
        broken = subprocess.run([hf, "cache", "verify", "acme/tiny", "--cache-dir", str(cache)], env=env,
                                capture_output=True, text=True, timeout=120)
        assert broken.returncode != 0 and "model.safetensors" in broken.stdout + broken.stderr


@pytest.mark.hubclient
def test_hf_token_reaches_protected_repos(reg, tmp_path):
    add_registered(reg, make_tiny_repo(tmp_path / "s", big=False), "secret/tiny")
    token_file = tmp_path / "tokens.toml"
    token_file.write_text('protected = ["secret/*"]\n[[tokens]]\nname = "nodes"\ntoken = "hf_node_token_1"\n'
                          'read = ["secret/*"]\n')
    script = """
import json
from huggingface_hub import snapshot_download
from huggingface_hub.errors import RepositoryNotFoundError
try:
    print(json.dumps({"snapshot": snapshot_download("secret/tiny")}))
except RepositoryNotFoundError as exc:
    print(json.dumps({"error": type(exc).__name__}))
"""
    with serve(reg, TokenPolicy.load(token_file)) as server:
        anon = run_client(script, client_env(server.url, tmp_path / "c1"))
        assert anon == {"error": "RepositoryNotFoundError"}
        authed = run_client(script, client_env(server.url, tmp_path / "c2", HF_TOKEN="hf_node_token_1"))
        assert (Path(authed["snapshot"]) / "config.json").is_file()


ML_SCRIPT = """
import json, sys
import hf_xet  # installed on purpose (see the module docstring)
# This machine's PyPI torchvision (CUDA) cannot load beside the CPU torch; hide it as the registry's loaders do.
# Environment only: the clients below are used exactly as users call them.
from registry.loaders.runtime import import_torch
torch = import_torch()
from peft import PeftModel
from sentence_transformers import SentenceTransformer
from transformers import AutoModel, AutoTokenizer

minilm_dir, base_dir, lora_dir = sys.argv[1:4]
texts = ["What is the capital of France?", "hello world"]

def embed(name):
    tok = AutoTokenizer.from_pretrained(name)
    model = AutoModel.from_pretrained(name).eval()
    with torch.no_grad():
        return model(**tok(texts, padding=True, return_tensors="pt")).last_hidden_state

def lora(base, adapter):
    tok = AutoTokenizer.from_pretrained(base)
    model = PeftModel.from_pretrained(AutoModel.from_pretrained(base), adapter).eval()
    with torch.no_grad():
        return model(**tok(texts, padding=True, return_tensors="pt")).last_hidden_state

out = {}
out["transformers"] = float((embed("sentence-transformers/all-MiniLM-L6-v2") - embed(minilm_dir)).abs().max())
st_mirror = SentenceTransformer("sentence-transformers/all-MiniLM-L6-v2", device="cpu").encode(texts)
st_local = SentenceTransformer(minilm_dir, device="cpu").encode(texts)
out["sentence_transformers"] = float(abs(st_mirror - st_local).max())
out["st_shape"] = list(st_mirror.shape)
served, local = lora("acme/tiny-bert", "acme/tiny-lora"), lora(base_dir, lora_dir)
out["peft"] = float((served - local).abs().max())
out["lora_changes_output"] = float((served - embed(base_dir)).abs().max())
print(json.dumps(out))
"""


@pytest.mark.ml
def test_transformers_sentence_transformers_and_peft_load_from_the_mirror(reg, tmp_path, minilm_dir):
    from tests.models_helpers import build_lora_adapter, build_tiny_bert

    add_registered(reg, minilm_dir, "sentence-transformers/all-MiniLM-L6-v2")
    base_dir = build_tiny_bert(tmp_path / "tiny-bert")  # imports torch behind the torchvision guard first
    from transformers import AutoModel

    lora_dir = build_lora_adapter(AutoModel.from_pretrained(base_dir), tmp_path / "tiny-lora",
                                  targets=["query", "value"], base_name="acme/tiny-bert")
    add_registered(reg, base_dir, "acme/tiny-bert")
    add_registered(reg, lora_dir, "acme/tiny-lora")
    with serve(reg) as server:
        out = run_client(ML_SCRIPT, client_env(server.url, tmp_path / "hf-cache"), str(minilm_dir), str(base_dir),
                         str(lora_dir), timeout=600)
        assert out["transformers"] == 0.0
        assert out["sentence_transformers"] == 0.0 and out["st_shape"] == [2, 384]
        assert out["peft"] == 0.0
        assert out["lora_changes_output"] > 0  # the adapter really was applied over the served base
        assert not any("unknown" in k for k in server.app.stats), server.app.stats

