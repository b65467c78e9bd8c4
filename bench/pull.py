"""Pull throughput: `registry pull` (verifies every byte: sha256 + blake3, git sha1 for small files) vs
`huggingface_hub.snapshot_download` (checks sizes only) of the same repo, from the same loopback server.

The repo: one 1 GiB safetensors file + 200 small files (1-32 KiB), served by tests/hubsim.py (a
threaded http.server using sendfile). Each client runs in its own child process, alternately, ROUNDS
times each; the child's peak RSS and CPU come from wait4(). Both start from an empty store/cache; the
registry's catalog is created before timing (a user's catalog already exists).

    python bench/pull.py [--size-mib 1024] [--small 200] [--rounds 5] [--data DIR] [--server hubsim|olah]

``--server olah`` serves the same repo from a real Olah (tests/olah_helpers.py: a git-LFS clone in its
``mirrors-path``, offline) instead: both clients then pay Olah's costs (it reads each file into memory and
re-hashes an LFS object on every HEAD), so the ratio says what each client adds on top of a slow mirror.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.hubsim import HubSim  # noqa: E402
from tests.olah_helpers import Olah, mirror_repo  # noqa: E402

REPO = "bench-org/big-model"


def build_repo(folder: Path, size_mib: int, small: int) -> None:
    """A valid safetensors file of ``size_mib`` MiB (pseudo-random bytes) + ``small`` small JSON files."""
    import struct

    target = folder / "model.safetensors"
    if target.exists() and target.stat().st_size > size_mib * 1024 * 1024:
        return
    folder.mkdir(parents=True, exist_ok=True)
    n = size_mib * 1024 * 1024 // 4
    header = json.dumps({"w": {"dtype": "F32", "shape": [n], "data_offsets": [0, n * 4]}}).encode()
    header += b" " * (-len(header) % 8)
    block = os.urandom(8 * 1024 * 1024)
    with open(target, "wb") as f:
        f.write(struct.pack("<Q", len(header)) + header)
        left = n * 4
        while left:
            k = min(left, len(block))
            f.write(block[:k])
            left -= k
    (folder / "config.json").write_text(json.dumps({"model_type": "bert"}))
    extra = folder / "extra"
    extra.mkdir(exist_ok=True)
    for i in range(small):
        (extra / f"part-{i:03d}.json").write_text(json.dumps({"i": i, "pad": "x" * (1024 * (1 + i % 32))}))


def start_server(kind: str, repo_dir: Path, data: Path) -> tuple[str, str, Callable[[], None]]:
    """(URL, description, stop) of the server the clients pull from."""
    if kind == "hubsim":
        sim = HubSim()
        sim.add_repo(REPO, repo_dir)
        sim.start()
        return sim.url, "hubsim (tests/hubsim.py, sendfile)", sim.stop
    import olah  # noqa: F401  (the 'test' extra)
    from importlib.metadata import version

    work = Path(tempfile.mkdtemp(prefix="bench-olah-", dir=data))
    mirror_repo(work, work / "mirrors", REPO, repo_dir)
    server = Olah(work, work / "mirrors").start(ready_repo=REPO)

    def stop() -> None:
        server.stop()
        shutil.rmtree(work, ignore_errors=True)

    return server.url, f"Olah {version('olah')} offline, git-LFS clone in mirrors-path", stop


def run_child(cmd: list[str], env: dict[str, str]) -> tuple[float, int, float]:
    """(wall seconds, peak RSS bytes, CPU seconds user+system) of one child process."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    err = proc.stderr.read()
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"{cmd[:4]} failed ({proc.returncode}): {err[-2000:]}")
    return wall, usage.ru_maxrss * 1024, usage.ru_utime + usage.ru_stime


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size-mib", type=int, default=1024)
    ap.add_argument("--small", type=int, default=200)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--data", type=Path, default=ROOT / "bench" / "_data" / "pull")
    ap.add_argument("--server", choices=["hubsim", "olah"], default="hubsim")
    args = ap.parse_args()

    repo_dir = args.data / "repo"
    build_repo(repo_dir, args.size_mib, args.small)
    manifest = args.data / "manifest.toml"
    manifest.write_text(f'name = "{REPO}"\nfamily = "transformers"\n'
                        '[[component]]\nrole = "weights"\nfiles = ["model.safetensors"]\n'
                        '[[component]]\nrole = "config"\npatterns = ["config.json", "extra/*.json"]\n')
    total = sum(p.stat().st_size for p in repo_dir.rglob("*") if p.is_file())
    files = sum(1 for p in repo_dir.rglob("*") if p.is_file())

    url, server, stop_server = start_server(args.server, repo_dir, args.data)
    base_env = {**os.environ, "HF_HUB_DISABLE_TELEMETRY": "1", "PYTHONPATH": str(ROOT)}
    for k in ("HF_ENDPOINT", "HF_HUB_OFFLINE", "HF_TOKEN"):
        base_env.pop(k, None)
    work = Path(tempfile.mkdtemp(prefix="bench-pull-", dir=args.data))
    ours: list[tuple[float, int, float]] = []
    theirs: list[tuple[float, int, float]] = []
    try:
        for _ in range(args.rounds):
            home = work / "home"
            env = {**base_env, "REGISTRY_HOME": str(home), "REGISTRY_DATABASE_URL": f"sqlite:///{home}/catalog.db"}
            subprocess.run([sys.executable, "-m", "registry", "list"], env=env, check=True, capture_output=True)
            ours.append(run_child([sys.executable, "-m", "registry", "pull", REPO, "--no-smoke", "--endpoint", url,
                                   "--manifest", str(manifest), "--json"], env))
            shutil.rmtree(home)

            cache = work / "hf-cache"
            code = ("import sys; from huggingface_hub import snapshot_download; "
                    f"snapshot_download({REPO!r}, endpoint={url!r}, cache_dir={str(cache)!r})")
            theirs.append(run_child([sys.executable, "-c", code], base_env))
            shutil.rmtree(cache)
    finally:
        stop_server()
        shutil.rmtree(work, ignore_errors=True)

    def mbps(wall: float) -> float:
        return total / wall / 1e6

    o_wall, t_wall = (statistics.median(r[0] for r in runs) for runs in (ours, theirs))
    o_rss, t_rss = (max(r[1] for r in runs) for runs in (ours, theirs))
    o_cpu, t_cpu = (statistics.median(r[2] for r in runs) for runs in (ours, theirs))
    import huggingface_hub

    print(f"repo: {files} files, {total / 2**20:.0f} MiB; {args.rounds} rounds each, median wall; "
          f"huggingface_hub {huggingface_hub.__version__}; server: {server}")
    print(f"{'client':<44} {'wall s':>7} {'MB/s':>7} {'CPU s':>6} {'peak RSS MB':>12}")
    print(f"{'registry pull (sha256+blake3+git sha1)':<44} {o_wall:7.2f} {mbps(o_wall):7.0f} {o_cpu:6.2f} "
          f"{o_rss / 1e6:12.0f}")
    print(f"{'snapshot_download (size check only)':<44} {t_wall:7.2f} {mbps(t_wall):7.0f} {t_cpu:6.2f} "
          f"{t_rss / 1e6:12.0f}")
    print(f"throughput ratio registry/snapshot_download: {t_wall / o_wall:.2f}x (target >= 0.9x); "
          f"registry peak RSS {o_rss / 1e6:.0f} MB (target < 300 MB)")
    print("all rounds (wall s): registry " + ", ".join(f"{r[0]:.2f}" for r in ours)
          + "; snapshot_download " + ", ".join(f"{r[0]:.2f}" for r in theirs))


if __name__ == "__main__":
    main()
