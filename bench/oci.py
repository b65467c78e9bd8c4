"""OCI push and pull: `registry push` / `registry pull oci://` vs `skopeo copy` of the same ModelPack artifact,
through the local CNCF distribution registry (Debian's docker-registry) on loopback.

The model: one 1 GiB safetensors file + 200 small files (1-32 KiB), added to a registry once (not timed).
Each round uses fresh registries and stores:
  push:  `registry push` store -> registry A      vs  `skopeo copy oci:LAYOUT -> docker://B` (disk -> registry)
  pull:  `registry pull oci://A` -> a fresh store  vs  `skopeo copy docker://A -> oci:LAYOUT` (registry -> disk)
  re-push of the unchanged model to A (the whole CLI process: start-up, catalog, one HEAD per artifact).
Ours verify as they go (pull: sha256 + blake3 + git sha1 per layer, checked against the record); skopeo checks
each blob's sha256. Each command is its own child process; peak RSS and CPU come from wait4().

    python bench/oci.py [--size-mib 1024] [--small 200] [--rounds 3] [--data DIR]
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.oci_helpers import SKOPEO, distribution  # noqa: E402

_spec = importlib.util.spec_from_file_location("bench_pull", ROOT / "bench" / "pull.py")
assert _spec is not None and _spec.loader is not None
bench_pull = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench_pull)  # the same model builder and child-process timer as bench/pull.py
build_repo, run_child = bench_pull.build_repo, bench_pull.run_child

NAME = "bench-org/oci-model"


def _service_repush(env: dict[str, str], target: str) -> float:
    """The re-push without the process start-up: push_model timed inside a child that has imported everything."""
    code = ("import time, sys; from registry.config import Settings; from registry.services.context import Registry; "
            "from registry.services.oci_push import push_model; reg = Registry.open(Settings.from_env()); "
            f"t = time.perf_counter(); r = push_model(reg, {NAME!r}, {target!r}, insecure=True); "
            "assert r.unchanged; print(time.perf_counter() - t)")
    out = subprocess.run([sys.executable, "-c", code], env=env, check=True, capture_output=True, text=True)
    return float(out.stdout.strip())


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size-mib", type=int, default=1024)
    ap.add_argument("--small", type=int, default=200)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--data", type=Path, default=ROOT / "bench" / "_data" / "oci")
    args = ap.parse_args()
    if SKOPEO is None or shutil.which("docker-registry") is None:
        raise SystemExit("needs docker-registry and skopeo: apt-get install -y docker-registry skopeo")

    repo_dir = args.data / "repo"
    build_repo(repo_dir, args.size_mib, args.small)
    manifest = args.data / "manifest.toml"
    manifest.write_text(f'name = "{NAME}"\nfamily = "transformers"\n'
                        '[[component]]\nrole = "weights"\nfiles = ["model.safetensors"]\n'
                        '[[component]]\nrole = "config"\npatterns = ["config.json", "extra/*.json"]\n')
    total = sum(p.stat().st_size for p in repo_dir.rglob("*") if p.is_file())
    files = sum(1 for p in repo_dir.rglob("*") if p.is_file())
    work = Path(tempfile.mkdtemp(prefix="bench-oci-", dir=args.data))
    base_env = {**os.environ, "PYTHONPATH": str(ROOT), "REGISTRY_SMOKE": "0"}

    def env_for(home: Path) -> dict[str, str]:
        return {**base_env, "REGISTRY_HOME": str(home), "REGISTRY_DATABASE_URL": f"sqlite:///{home}/catalog.db"}

    source = env_for(work / "source")
    subprocess.run([sys.executable, "-m", "registry", "add", str(repo_dir), "--name", NAME, "--manifest",
                    str(manifest), "--no-smoke"], env=source, check=True, capture_output=True)
    registry = [sys.executable, "-m", "registry"]
    runs: dict[str, list[tuple[float, int, float]]] = {k: [] for k in
                                                        ("push", "skopeo push", "pull", "skopeo pull", "re-push",
                                                         "cli floor")}
    service_repush: list[float] = []
    try:
        for i in range(args.rounds):
            with contextlib.ExitStack() as stack:
                a = stack.enter_context(distribution(work / f"a{i}"))
                b = stack.enter_context(distribution(work / f"b{i}"))
                layout, target = work / f"layout{i}", work / f"target{i}"
                runs["push"].append(run_child([*registry, "push", NAME, f"oci://{a.host}/ours:v1", "--insecure"],
                                              source))
                runs["re-push"].append(run_child([*registry, "push", NAME, f"oci://{a.host}/ours:v1", "--insecure"],
                                                 source))
                runs["cli floor"].append(run_child([*registry, "list"], source))  # what any command pays to start
                service_repush.append(_service_repush(source, f"oci://{a.host}/ours:v1"))
                runs["skopeo pull"].append(run_child([SKOPEO, "copy", "--src-tls-verify=false",
                                                      f"docker://{a.host}/ours:v1", f"oci:{layout}:v1"], base_env))
                subprocess.run([*registry, "list"], env=env_for(target), check=True, capture_output=True)
                runs["pull"].append(run_child([*registry, "pull", f"oci://{a.host}/ours:v1", "--insecure",
                                               "--no-smoke"], env_for(target)))
                runs["skopeo push"].append(run_child([SKOPEO, "copy", "--dest-tls-verify=false", f"oci:{layout}:v1",
                                                      f"docker://{b.host}/peer:v1"], base_env))
                shutil.rmtree(layout)
                shutil.rmtree(target)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    def med(key: str, i: int) -> float:
        return statistics.median(r[i] for r in runs[key])

    def peak(key: str) -> int:
        return max(r[1] for r in runs[key])

    version = subprocess.run([SKOPEO, "--version"], capture_output=True, text=True).stdout.strip()
    print(f"model: {files} files, {total / 2**20:.0f} MiB; {args.rounds} rounds, median wall; {version}; "
          "docker-registry (distribution 2.8) on loopback")
    print(f"{'command':<44} {'wall s':>7} {'MB/s':>7} {'CPU s':>6} {'peak RSS MB':>12}")
    labels = {"push": "registry push (store -> registry)", "skopeo push": "skopeo copy oci: -> docker://",
              "pull": "registry pull oci:// (verified into store)", "skopeo pull": "skopeo copy docker:// -> oci:",
              "re-push": "registry push, unchanged model", "cli floor": "registry list (CLI start-up, for scale)"}
    for key, label in labels.items():
        wall = med(key, 0)
        print(f"{label:<44} {wall:7.2f} {total / wall / 1e6:7.0f} {med(key, 2):6.2f} {peak(key) / 1e6:12.0f}")
    print(f"push throughput ratio registry/skopeo: {med('skopeo push', 0) / med('push', 0):.2f}x; "
          f"pull: {med('skopeo pull', 0) / med('pull', 0):.2f}x (target >= 1x)")
    print(f"peak RSS: push {peak('push') / 1e6:.0f} MB, pull {peak('pull') / 1e6:.0f} MB (target < 300 MB); "
          f"re-push {med('re-push', 0):.2f} s as a command (target < 1 s), of which push_model itself "
          f"{statistics.median(service_repush):.2f} s; `registry list` alone takes {med('cli floor', 0):.2f} s")
    print("all rounds (wall s): " + "; ".join(f"{k} " + ", ".join(f"{r[0]:.2f}" for r in v) for k, v in runs.items()))


if __name__ == "__main__":
    main()
