"""Helpers for the mirror, bundle and deploy tests: a real uvicorn server on 127.0.0.1 (in a thread),
registering a model without the smoke path, and running the real HF clients in a subprocess
(HF_ENDPOINT is read when huggingface_hub is imported, so each client needs a fresh interpreter)."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select

from registry.catalog.models import Model, SmokeRun
from registry.services.add import add_folder
from registry.services.context import Registry

REPO_ROOT = Path(__file__).resolve().parents[1]


def set_state(reg: Registry, name: str, state: str, reason: str | None = None) -> None:
    """Move a model's state directly. Registration (the smoke inference) is built and tested elsewhere;
    here we only need a model in the state the mirror, export and deploy care about."""
    with reg.catalog.session() as session:
        for model in session.scalars(select(Model).where(Model.name == name)):
            model.state = state
            model.state_reason = reason if state == "quarantined" else None


def add_registered(reg: Registry, folder: Path, name: str, *, smoke: bool = False) -> str:
    """``add_folder`` then mark registered; returns the commit. ``smoke`` also records a smoke run row."""
    result = add_folder(reg, folder, name)
    set_state(reg, name, "registered")
    if smoke:
        with reg.catalog.session() as session:
            model = session.scalars(select(Model).where(Model.name == name)).one()
            model.smoke_runs.append(SmokeRun(
                passed=True, device="cpu", dtype="float32", library_versions={"torch": "2.13.0"}, wall_ms=12.5,
                output_shapes={"embeddings": [2, 8]}, fingerprint="ab" * 32, stats={"mean": 0.1}, error=None))
    return result.commit


@dataclass
class RunningServer:
    url: str
    app: object  # registry.server.MirrorApp: its .stats counts requests by route and status


@contextlib.contextmanager
def serve(reg: Registry, policy=None, *, loop: str = "auto") -> Iterator[RunningServer]:
    """The real ASGI app under uvicorn on an ephemeral loopback port, in a background thread.

    ``loop="asyncio"`` is what ``registry serve`` runs (bodies via os.sendfile); the default picks uvloop when
    installed, where the portable chunked path runs."""
    import uvicorn

    from registry.server import create_app

    app = create_app(reg, policy)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, log_level="warning", access_log=False, http="httptools", lifespan="on", loop=loop)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the test server did not start")
        time.sleep(0.02)
    try:
        yield RunningServer(f"http://127.0.0.1:{port}", app)
    finally:
        server.should_exit = True
        thread.join(timeout=20)
        sock.close()


def client_env(endpoint: str, cache: Path, **extra: str) -> dict[str, str]:
    """A clean environment for a client subprocess: only loopback, no Hub, Xet left enabled on purpose."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "REGISTRY_", "TRANSFORMERS_"))}
    env.update({"HF_ENDPOINT": endpoint, "HF_HUB_CACHE": str(cache), "HF_HOME": str(cache.parent / "hf-home"),
                "HF_HUB_DISABLE_UPDATE_CHECK": "1", "NO_PROXY": "*", "PYTHONPATH": str(REPO_ROOT)})
    env.update(extra)
    return env


def run_client(script: str, env: dict[str, str], *args: str, python: str | None = None, timeout: int = 300) -> dict:
    """Run ``script ARGS`` in a fresh interpreter; it must print one JSON object as its last stdout line."""
    proc = subprocess.run([python or sys.executable, "-c", textwrap.dedent(script), *args], env=env,
                          capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise AssertionError(f"client failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


@dataclass(frozen=True)
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self):
        return json.loads(self.body)


def http(method: str, url: str, *, headers: dict[str, str] | None = None, body: bytes | None = None) -> Reply:
    """One plain HTTP/1.1 exchange (stdlib only), headers lower-cased."""
    import http.client
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
    try:
        conn.request(method, parts.path + (f"?{parts.query}" if parts.query else ""), body=body, headers=headers or {})
        resp = conn.getresponse()
        return Reply(resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read())
    finally:
        conn.close()


def make_tiny_repo(folder: Path, *, big: bool = True, seed: int = 0) -> Path:
    """A bert-like folder with one LFS-sized weight file (>= 10 MiB when ``big``) and a nested folder."""
    from tests.conftest import make_bert_like, write_json

    make_bert_like(folder, hidden=1200 if big else 8, seed=seed)
    write_json(folder / "1_Pooling" / "config.json", {"word_embedding_dimension": 8, "pooling_mode_mean_tokens": True})
    write_json(folder / "modules.json", [{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
                                         {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}])
    return folder
