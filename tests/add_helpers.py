"""Helpers for the add/verify tests: catalog row counts, a hand-built HF cache snapshot, an adapter folder."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from sqlalchemy import func, select

from registry.catalog.models import Blob, Component, File, Lineage, Model, Repo, Revision
from registry.hashing import LFS_THRESHOLD, git_blob_sha1
from tests.conftest import write_json, write_safetensors

TABLES = {"repos": Repo, "revisions": Revision, "blobs": Blob, "files": File, "models": Model,
          "components": Component, "lineage": Lineage}


def catalog_counts(reg) -> dict[str, int]:
    with reg.catalog.reader() as session:
        return {name: session.scalar(select(func.count()).select_from(t)) for name, t in TABLES.items()}


def store_files(reg) -> list[str]:
    """Every blob and every temp/partial file in the store."""
    return sorted([s for s, _ in reg.store.iter_blobs()] + [str(p) for p in reg.store.stray_files()])


def make_adapter(folder: Path, base: str) -> Path:
    write_json(folder / "adapter_config.json", {"base_model_name_or_path": base, "peft_type": "LORA", "r": 2})
    write_safetensors(folder / "adapter_model.safetensors", {"lora_A.weight": ("F32", [2, 8])}, seed=3)
    return folder


def make_hf_snapshot(source: Path, cache: Path, repo_id: str, commit: str, refs: tuple[str, ...] = ("main",)) -> Path:
    """Lay ``source``'s files out as huggingface_hub does: blobs/<etag> + snapshots/<commit>/ relative links."""
    repo_dir = cache / ("models--" + repo_id.replace("/", "--"))
    blobs = repo_dir / "blobs"
    blobs.mkdir(parents=True)
    snap = repo_dir / "snapshots" / commit
    for src in sorted(p for p in source.rglob("*") if p.is_file()):
        rel = src.relative_to(source)
        data = src.read_bytes()
        lfs = src.suffix in (".safetensors", ".bin") or len(data) >= LFS_THRESHOLD
        etag = hashlib.sha256(data).hexdigest() if lfs else git_blob_sha1(data)
        (blobs / etag).write_bytes(data)
        link = snap / rel
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(blobs / etag, link.parent))
    for ref in refs:
        (repo_dir / "refs" / ref).parent.mkdir(parents=True, exist_ok=True)
        (repo_dir / "refs" / ref).write_text(commit)
    return snap


def wait_for_ctime_tick(path: Path, scratch: Path) -> None:
    """File timestamps come from a coarse kernel clock: wait until it has moved past ``path``'s ctime, so
    a write that follows is guaranteed a new ctime (this waits; it asserts nothing about time)."""
    before = os.stat(path).st_ctime_ns
    while True:
        scratch.write_bytes(b"x")
        if os.stat(scratch).st_ctime_ns > before:
            return
