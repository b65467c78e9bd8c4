"""Repos for the pull tests, built byte by byte (no torch), and a hubsim fixture serving them.

Names live under ``test-org/`` so no curated manifest in manifests/ applies to them by accident.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import CliResult, make_bert_like, run_in_process, write_json, write_safetensors
from tests.hubsim import HubSim

ADAPTER = "test-org/tiny-lora"
BASE = "test-org/tiny-bert-base"
SHARDED = "test-org/sharded-bert"
BGE = "test-org/tiny-bge-m3"
REPO_ROOT = Path(__file__).resolve().parent.parent


def make_base(folder: Path, *, seed: int = 0) -> Path:
    make_bert_like(folder, hidden=8, seed=seed)
    (folder / "README.md").write_text("a tiny bert base\n")
    return folder


def make_adapter(folder: Path, base: str = BASE, *, revision: str | None = None) -> Path:
    """A LoRA adapter over a tiny BERT, as peft's save_pretrained writes it, plus a training leftover."""
    cfg = {"base_model_name_or_path": base, "peft_type": "LORA", "task_type": "FEATURE_EXTRACTION", "r": 4,
           "lora_alpha": 8, "target_modules": ["query", "value"], "inference_mode": True}
    if revision:
        cfg["revision"] = revision
    write_json(folder / "adapter_config.json", cfg)
    write_safetensors(folder / "adapter_model.safetensors", {
        "base_model.model.layer.0.attention.query.lora_A.weight": ("F32", [4, 8]),
        "base_model.model.layer.0.attention.query.lora_B.weight": ("F32", [8, 4]),
    }, seed=3)
    write_json(folder / "tokenizer_config.json", {"model_max_length": 32})
    (folder / "vocab.txt").write_text("[PAD]\n[UNK]\n[CLS]\n[SEP]\nhello\nworld\n")
    (folder / "checkpoint-10").mkdir(parents=True, exist_ok=True)
    (folder / "checkpoint-10" / "optimizer.pt").write_bytes(os.urandom(4096))
    return folder


def make_sharded(folder: Path) -> Path:
    """An index + two shards, with an ONNX export and a second weight format that must not be pulled."""
    make_bert_like(folder, hidden=8, shards=2, seed=5)
    (folder / "onnx").mkdir(exist_ok=True)
    (folder / "onnx" / "model.onnx").write_bytes(os.urandom(8192))
    (folder / "pytorch_model.bin").write_bytes(os.urandom(4096))
    return folder


def make_bge_m3(folder: Path) -> Path:
    """The BGE-M3 layout: encoder, colbert/sparse heads (any bytes: only hashed here), sentencepiece tokenizer."""
    write_json(folder / "config.json", {"architectures": ["XLMRobertaModel"], "model_type": "xlm-roberta",
                                        "hidden_size": 8, "pad_token_id": 1})
    write_safetensors(folder / "model.safetensors", {"embeddings.word_embeddings.weight": ("F32", [16, 8])}, seed=7)
    (folder / "colbert_linear.pt").write_bytes(os.urandom(2 * 1024 + 17))
    (folder / "sparse_linear.pt").write_bytes(os.urandom(600))
    (folder / "sentencepiece.bpe.model").write_bytes(os.urandom(3000))
    write_json(folder / "tokenizer.json", {"version": "1.0", "model": {"type": "Unigram"}})
    write_json(folder / "tokenizer_config.json", {"model_max_length": 8192})
    write_json(folder / "special_tokens_map.json", {"pad_token": "<pad>"})
    (folder / "onnx").mkdir(exist_ok=True)
    (folder / "onnx" / "model.onnx").write_bytes(os.urandom(8192))
    (folder / "pytorch_model.bin").write_bytes(os.urandom(4096))
    return folder


@pytest.fixture
def hub(tmp_path) -> Iterator[HubSim]:
    """A started hubsim serving the adapter + base pair, a sharded model and a BGE-M3 layout."""
    repos = tmp_path / "upstream"
    sim = HubSim()
    sim.add_repo(BASE, make_base(repos / "base"))
    sim.add_repo(ADAPTER, make_adapter(repos / "adapter"))
    sim.add_repo(SHARDED, make_sharded(repos / "sharded"))
    sim.add_repo(BGE, make_bge_m3(repos / "bge"))
    with sim:
        yield sim


def run_cli(*args: str) -> CliResult:
    """``registry ARGS`` in-process (the environment must already point at the test registry)."""
    return run_in_process(*args)


def pull_process(env: dict[str, str], *args: str, wrap: list[str] | None = None) -> subprocess.Popen:
    """``python -m registry pull ARGS`` in a child process (for kill -9 and concurrency)."""
    full = {**os.environ, **env, "PYTHONPATH": str(REPO_ROOT)}
    cmd = [*(wrap or []), sys.executable, "-m", "registry", "pull", *args]
    return subprocess.Popen(cmd, env=full, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def catalog_counts(reg) -> dict[str, int]:
    from sqlalchemy import func, select

    from registry.catalog.models import Blob, File, Model, Revision

    with reg.catalog.reader() as s:
        return {name: s.scalar(select(func.count()).select_from(table))
                for name, table in (("models", Model), ("revisions", Revision), ("blobs", Blob), ("files", File))}


def events(reg, action: str) -> list[dict]:
    from sqlalchemy import select

    from registry.catalog.models import Event

    with reg.catalog.reader() as s:
        return [dict(e.details, subject=e.subject) for e in s.scalars(select(Event).where(Event.action == action))]


def store_files(reg) -> list[Path]:
    return sorted(p for p in (reg.store.root / "sha256").rglob("*") if p.is_file())


def dump(result: CliResult) -> str:
    return json.dumps({"exit": result.exit_code, "stdout": result.stdout[-2000:], "stderr": result.stderr[-2000:]})
