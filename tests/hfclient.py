"""huggingface_hub's own client against the same servers as `registry pull`, for parity tests.

Each call runs in a child process: huggingface_hub reads HF_HUB_DISABLE_XET and friends once, at import,
and keeps one HTTP session per process, so a child is the only clean way to give each call its own settings.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import select

_SNAPSHOT = r"""
import hashlib, json, os, sys
from pathlib import Path
from huggingface_hub import snapshot_download
repo, revision, endpoint, cache = sys.argv[1:5]
try:
    root = Path(snapshot_download(repo, revision=revision, endpoint=endpoint, cache_dir=cache,
                                  token=os.environ.get("HF_TOKEN") or False, max_workers=2))
except Exception as exc:
    chain, cause = [], exc  # huggingface_hub wraps the HTTP error: keep the causes' words too
    while cause is not None and len(chain) < 5:
        chain.append(f"{type(cause).__name__}: {cause}")
        cause = cause.__cause__ or cause.__context__
    print(json.dumps({"error": type(exc).__name__, "message": " <- ".join(chain)[-3000:]}))
    raise SystemExit(0)
files = {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
         for p in sorted(root.rglob("*")) if p.is_file()}
print(json.dumps({"files": files, "root": str(root)}))
"""


@dataclass(frozen=True)
class Snapshot:
    files: dict[str, str] = field(default_factory=dict)  # path -> sha256 of the bytes it wrote
    error: str | None = None  # the exception's class name when snapshot_download raised
    message: str = ""


def snapshot(endpoint: str, repo: str, revision: str, home: Path, *, token: str | None = None,
             xet: bool = False, timeout: float = 120) -> Snapshot:
    """``snapshot_download`` in a child process with its own HF_HOME; Xet off unless ``xet``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    env.update(HF_HOME=str(home), HF_HUB_DISABLE_TELEMETRY="1", HF_HUB_DISABLE_UPDATE_CHECK="1",
               HF_HUB_DISABLE_PROGRESS_BARS="1", HF_HUB_ETAG_TIMEOUT="30", HF_HUB_DOWNLOAD_TIMEOUT="30")
    if not xet:
        env["HF_HUB_DISABLE_XET"] = "1"
    if token:
        env["HF_TOKEN"] = token
    proc = subprocess.run([sys.executable, "-c", _SNAPSHOT, repo, revision, endpoint, str(home / "hub")],
                          env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    return Snapshot(out.get("files", {}), out.get("error"), out.get("message", ""))


def pulled_files(reg, repo_id: str, commit: str) -> dict[str, str]:
    """path -> sha256 of every file the catalog recorded for ``repo_id`` at ``commit``."""
    from registry.catalog.models import Repo, Revision

    with reg.catalog.reader() as s:
        revision = s.scalars(select(Revision).join(Revision.repo)
                             .where(Repo.repo_id == repo_id, Revision.commit_sha == commit)).one()
        return {f.path: f.blob_sha256 for f in revision.files}
