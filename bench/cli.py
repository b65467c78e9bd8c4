"""Start-up and read-command latency of the `registry` CLI, side by side with the `hf` CLI.

    python bench/cli.py [--models 1000] [--store-gb 100] [--repeat 7]

Ours: `registry --version`, `list`, `show` and a fast `verify` of a catalog of MODELS small models, and a
fast `verify` of an unchanged store of STORE_GB (sparse blobs, each proven once by `verify --deep` first, so the
stat cache holds it). Peer: `hf version` and `hf cache ls` over an HF cache holding the same MODELS repos.
Each command runs REPEAT times as a fresh process; the median wall time is reported, with its ratio to
`hf cache ls` (the issue's target: each of ours at or under it). The data sets are built once under
bench/_data/cli/ and reused.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import statistics
import struct
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "bench" / "_data" / "cli"
BIN = Path(sys.executable).parent
CHUNK = 1 << 24


def tiny_model(folder: Path, seed: int) -> None:
    """A small transformers-style folder whose weights differ per seed (distinct blobs)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps({"architectures": ["BertModel"], "model_type": "bert",
                                                    "hidden_size": 8, "seed": seed}))
    (folder / "tokenizer_config.json").write_text(json.dumps({"model_max_length": 32}))
    (folder / "vocab.txt").write_text("[PAD]\n[UNK]\n[CLS]\n[SEP]\nhello\nworld\n")
    data = bytes((seed * 31 + j) % 251 for j in range(256))
    header = json.dumps({"w": {"dtype": "F32", "shape": [8, 8], "data_offsets": [0, 256]}}).encode()
    header += b" " * (-len(header) % 8)
    (folder / "model.safetensors").write_bytes(struct.pack("<Q", len(header)) + header + data)


def build_catalog(home: Path, models: int) -> None:
    marker = home / f".built-{models}"
    if marker.exists():
        return
    shutil.rmtree(home, ignore_errors=True)
    os.environ.update(REGISTRY_HOME=str(home), REGISTRY_SMOKE="0")
    os.environ.pop("REGISTRY_DATABASE_URL", None)
    from registry.config import Settings
    from registry.services.add import add_folder
    from registry.services.context import Registry

    reg = Registry.open(Settings.from_env())
    src = home.parent / "src"
    t0 = time.perf_counter()
    for i in range(models):
        folder = src / f"m{i}"
        tiny_model(folder, i)
        add_folder(reg, folder, f"bench/model-{i:05d}")
    reg.close()
    print(f"  built a catalog of {models} models in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    marker.touch()


def build_hf_cache(cache: Path, models: int) -> None:
    """The same models as an HF cache (blobs, snapshots of relative symlinks, refs), for `hf cache ls`."""
    marker = cache / f".built-{models}"
    if marker.exists():
        return
    shutil.rmtree(cache, ignore_errors=True)
    src = cache.parent / "src"
    for i in range(models):
        repo = cache / f"models--bench--model-{i:05d}"
        commit = hashlib.sha1(f"bench-{i}".encode()).hexdigest()
        snap = repo / "snapshots" / commit
        snap.mkdir(parents=True)
        (repo / "blobs").mkdir()
        (repo / "refs").mkdir()
        (repo / "refs" / "main").write_text(commit)
        for f in sorted((src / f"m{i}").iterdir()):
            data = f.read_bytes()
            etag = hashlib.sha256(data).hexdigest()
            (repo / "blobs" / etag).write_bytes(data)
            (snap / f.name).symlink_to(f"../../blobs/{etag}")
    marker.touch()


def _zero_digests(size: int) -> tuple[str, str]:
    """sha256 and blake3 of `size` zero bytes, hashed for real (the catalog only records what was proven)."""
    import blake3

    sha, b3 = hashlib.sha256(), blake3.blake3(max_threads=blake3.blake3.AUTO)
    zeros = bytes(CHUNK)
    left = size
    while left:
        n = min(left, CHUNK)
        view = memoryview(zeros)[:n]
        sha.update(view)
        b3.update(view)
        left -= n
    return sha.hexdigest(), b3.hexdigest()


def build_big_store(home: Path, store_gb: int) -> None:
    """STORE_GB of blobs in ten sparse files (no disk used), recorded as ten models, proven once by --deep."""
    marker = home / f".built-{store_gb}"
    if marker.exists():
        return
    shutil.rmtree(home, ignore_errors=True)
    os.environ.update(REGISTRY_HOME=str(home), REGISTRY_SMOKE="0")
    from registry.catalog.models import Model  # noqa: F401 (registers the tables)
    from registry.config import Settings
    from registry.hashing import git_blob_sha1, lfs_pointer_oid
    from registry.manifest.resolve import LockedComponent, LockedFile, ResolvedManifest
    from registry.services.add import local_commit
    from registry.services.context import Registry
    from registry.services.record import RepoSource, record_model

    reg = Registry.open(Settings.from_env())
    per_blob = store_gb * 10**9 // 10
    t0 = time.perf_counter()
    for i in range(10):
        size = per_blob + i  # distinct sizes: distinct digests, so ten blobs and not one
        sha, b3 = _zero_digests(size)
        path = reg.store.path_for(sha)
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "wb") as f:
            f.truncate(size)  # sparse: all zeros, no blocks on disk
        path.chmod(0o444)
        config = json.dumps({"architectures": ["BertModel"], "model_type": "bert", "big": i}).encode()
        config_sha = hashlib.sha256(config).hexdigest()
        with reg.store.writer(expected_sha256=config_sha, expected_size=len(config)) as w:
            w.write(config)
            stored = w.commit()
        files = (LockedFile("model.safetensors", size, sha, b3, lfs_pointer_oid(sha, size), True),)
        conf = (LockedFile("config.json", len(config), config_sha, stored.digests.blake3, git_blob_sha1(config), False),)
        name = f"bench/big-{i}"
        commit = local_commit(hashlib.sha256(f"{name}{sha}".encode()).hexdigest())
        comps = (LockedComponent("weights", name, commit, True, True, files),
                 LockedComponent("config", name, commit, True, True, conf))
        resolved = ResolvedManifest(name=name, family="transformers", inferred=True, source="bench",
                                    components=comps)
        with reg.catalog.session() as session:
            record_model(session, resolved, {name: RepoSource(name, commit, "bench", ("main",))}, state="verified")
    reg.close()
    print(f"  recorded {store_gb} GB of sparse blobs in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    t0 = time.perf_counter()
    subprocess.run([str(BIN / "registry"), "verify", "--deep"], check=True, stdout=subprocess.DEVNULL,
                   env={**os.environ, "REGISTRY_HOME": str(home)})
    print(f"  deep verify (blake3 of {store_gb} GB) took {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    marker.touch()


def median_wall(cmd: list[str], env: dict[str, str], repeat: int) -> tuple[float, int]:
    times = []
    code = 0
    for _ in range(repeat):
        t0 = time.perf_counter()
        code = subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode
        times.append(time.perf_counter() - t0)
    return statistics.median(times), code


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=int, default=1000)
    parser.add_argument("--store-gb", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()

    home, big, cache = DATA / "home", DATA / "home-big", DATA / "hf-cache"
    build_catalog(home, args.models)
    build_hf_cache(cache, args.models)
    build_big_store(big, args.store_gb)

    base = {k: v for k, v in os.environ.items() if not k.startswith(("REGISTRY_", "HF_"))}
    ours = {**base, "REGISTRY_HOME": str(home)}
    peer = {**base, "HF_HUB_CACHE": str(cache), "HF_HUB_DISABLE_TELEMETRY": "1", "HF_HUB_DISABLE_UPDATE_CHECK": "1",
            "HF_HUB_OFFLINE": "1"}
    reg, hf = str(BIN / "registry"), str(BIN / "hf")
    rows = [
        ("hf version", [hf, "version"], peer),
        ("hf cache ls", [hf, "cache", "ls"], peer),
        ("registry --version", [reg, "--version"], ours),
        (f"registry list ({args.models} models)", [reg, "list"], ours),
        ("registry show", [reg, "show", "bench/model-00000"], ours),
        (f"registry verify ({args.models} models, fast)", [reg, "verify"], ours),
        (f"registry verify ({args.store_gb} GB store, fast)", [reg, "verify"], {**base, "REGISTRY_HOME": str(big)}),
    ]
    results = []
    for label, cmd, env in rows:
        median_wall(cmd, env, 1)  # warm the page cache and the interpreter's .pyc files
        results.append((label, *median_wall(cmd, env, args.repeat)))
    reference = dict((label, t) for label, t, _ in results)["hf cache ls"]
    print(f"\n| command | median wall (s) | exit | ratio to `hf cache ls` |\n|---|---|---|---|")
    for label, t, code in results:
        print(f"| `{label}` | {t:.3f} | {code} | {t / reference:.2f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
