"""Hashing benchmark: us and the peers side by side, in one run, on the same warm files.

1. re-verification: ``registry verify --deep`` (the service: blake3 of every blob, all cores) vs
   ``hashlib.sha256`` file by file vs model-signing's default hashing (sha256 per file);
2. ingest: one pass computing sha256 + blake3 (+ git sha1 under 10 MiB) (``registry.hashing.hash_file``)
   vs ``hashlib.sha256`` alone;
3. fast verify of an unchanged store of 100 GB of blobs (sparse files, really hashed once and recorded
   in the catalog like any other model) vs re-hashing it, which is what a tool with no stat cache does.

    python bench/hashing.py [--gib 2.25] [--sparse-gb 100] [--repeat 3] [--write-docs]

Data lives in bench/_data (git-ignored) and is reused between runs; the 100 GB sparse store costs
about a minute of hashing the first time. GB = 10^9 bytes.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import blake3  # noqa: E402

from registry.config import Settings  # noqa: E402
from registry.hashing import hash_file, lfs_pointer_oid  # noqa: E402
from registry.manifest.resolve import LockedComponent, LockedFile, ResolvedManifest  # noqa: E402
from registry.services.add import add_folder, local_commit  # noqa: E402
from registry.services.context import Registry  # noqa: E402
from registry.services.record import RepoSource, record_model  # noqa: E402
from registry.services.verify import verify  # noqa: E402
from registry.store import StagedBlob  # noqa: E402

DATA = ROOT / "bench" / "_data"
GB = 1e9
MIB = 1024 * 1024


def _registry(home: Path) -> Registry:
    return Registry.open(Settings.from_env({"REGISTRY_HOME": str(home), "REGISTRY_ACTOR": "bench"}))


# ---- data ----------------------------------------------------------------------------------------

def make_files(folder: Path, total: int, count: int) -> list[Path]:
    """``count`` random files of ``total`` bytes together (kept if already there with the right sizes)."""
    folder.mkdir(parents=True, exist_ok=True)
    size = total // count
    files = [folder / f"part-{i:02d}.dat" for i in range(count)]
    for f in files:
        if f.exists() and f.stat().st_size == size:
            continue
        with open(f, "wb") as out:
            left = size
            while left:
                n = min(left, 64 * MIB)
                out.write(os.urandom(n))
                left -= n
    for stale in set(folder.iterdir()) - set(files):
        stale.unlink()
    return files


def add_to_store(home: Path, folder: Path) -> Registry:
    reg = _registry(home)
    manifest = DATA / "bench-model.toml"
    manifest.write_text('name = "bench/random"\nfamily = "transformers"\n'
                        '[[component]]\nrole = "weights"\npatterns = ["*.dat"]\n')
    t = time.perf_counter()
    result = add_folder(reg, folder, "bench/random", manifest_file=manifest)
    print(f"  add (copy + one-pass hashing into the store): {result.bytes / GB:.2f} GB in "
          f"{time.perf_counter() - t:.1f} s, {result.new_blobs} new blobs")
    return reg


def sparse_store(home: Path, total_gb: int, blob_gb: int = 1) -> Registry:
    """A registry whose store holds ``total_gb`` of sparse blobs, each hashed for real and recorded."""
    reg = _registry(home)
    with reg.catalog.reader() as session:
        from registry.catalog.queries import all_models

        done = [m.root_digest for m in all_models(session) if m.name == f"bench/sparse-{total_gb}"]
    if done:
        return reg
    count = total_gb // blob_gb
    size = int(blob_gb * GB)
    print(f"  building the sparse store: {count} blobs of {blob_gb} GB, hashing each once ...", flush=True)
    t = time.perf_counter()
    reg.store.ensure()
    files = []
    for i in range(count):
        tmp = reg.store.root / "tmp" / f"sparse-{i}"
        with open(tmp, "wb") as f:
            f.write(f"sparse blob {i}\n".encode())  # distinct bytes: distinct digests
            f.truncate(size)
        d = hash_file(tmp)
        reg.store.commit_staged(StagedBlob(d, tmp))  # rename keeps it sparse; records the stat cache
        files.append(LockedFile(f"blob-{i:03d}.dat", d.size, d.sha256, d.blake3, lfs_pointer_oid(d.sha256, d.size), True))
    component = LockedComponent("weights", f"bench/sparse-{total_gb}", "0" * 40, True, False, tuple(files))
    resolved = ResolvedManifest(f"bench/sparse-{total_gb}", "transformers", True, "bench", (component,))
    commit = local_commit(resolved.root_digest)
    component = LockedComponent("weights", resolved.name, commit, True, False, tuple(files))
    resolved = ResolvedManifest(resolved.name, "transformers", True, "bench", (component,))
    with reg.catalog.session() as session:
        record_model(session, resolved, {resolved.name: RepoSource(resolved.name, commit, "bench", ("main",))},
                     state="verified")
    print(f"  ... done in {time.perf_counter() - t:.0f} s")
    return reg


def warm(paths: list[Path]) -> None:
    buf = bytearray(8 * MIB)
    for p in paths:
        with open(p, "rb", buffering=0) as f:
            while f.readinto(buf):
                pass


# ---- the contenders ------------------------------------------------------------------------------

def hashlib_sha256(files: list[Path]) -> None:
    for p in files:
        with open(p, "rb") as f:
            hashlib.file_digest(f, "sha256")


def model_signing_default(folder: Path) -> Callable[[], None] | None:
    try:
        import model_signing.hashing as ms_hashing
    except Exception as exc:  # noqa: BLE001 - report any import failure and go on without it
        print(f"  model-signing unavailable: {exc!r}")
        return None
    return lambda: ms_hashing.hash(folder)


def best(fn: Callable[[], object], repeat: int) -> tuple[float, list[float]]:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times), times


# ---- main ----------------------------------------------------------------------------------------

def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--gib", type=float, default=2.25, help="GiB of random files (at least 2)")
    ap.add_argument("--files", type=int, default=3)
    ap.add_argument("--sparse-gb", type=int, default=100)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--write-docs", action="store_true", help="write the table into docs/benchmarks.md (Hashing)")
    args = ap.parse_args()

    print(f"machine: {os.cpu_count()} cores, {platform.processor() or platform.machine()}, Python {platform.python_version()}")
    folder = DATA / "files"
    files = make_files(folder, int(args.gib * 1024**3), args.files)
    total = sum(f.stat().st_size for f in files)
    reg = add_to_store(DATA / "home", folder)
    blobs = [p for _, p in reg.store.iter_blobs()]
    warm(files + blobs)
    ms = model_signing_default(folder)

    # interleaved repetitions: drift on a shared machine hits every contender alike
    runs: dict[str, list[float]] = {k: [] for k in ("deep", "sha256", "ms", "onepass")}
    for _ in range(args.repeat):
        t = time.perf_counter()
        report = verify(reg, deep=True)
        runs["deep"].append(time.perf_counter() - t)
        assert report.ok and report.blobs_hashed == len(files), report
        t = time.perf_counter()
        hashlib_sha256(files)
        runs["sha256"].append(time.perf_counter() - t)
        if ms is not None:
            t = time.perf_counter()
            ms()
            runs["ms"].append(time.perf_counter() - t)
        t = time.perf_counter()
        for p in files:
            hash_file(p)
        runs["onepass"].append(time.perf_counter() - t)

    # per-core speeds in memory: what bounds the ratio between the two algorithms on this CPU
    block = os.urandom(256 * MIB)
    core = {"sha256": len(block) / GB / best(lambda: hashlib.sha256(block).digest(), args.repeat)[0],
            "blake3": len(block) / GB / best(lambda: blake3.blake3(block).digest(), args.repeat)[0]}

    sparse = sparse_store(DATA / "sparse-home", args.sparse_gb)
    fast_times = []
    for _ in range(args.repeat):
        t = time.perf_counter()
        report = verify(sparse)
        fast_times.append(time.perf_counter() - t)
        assert report.ok and report.blobs_hashed == 0, report
    sparse_bytes = report.bytes_checked
    env = dict(os.environ, REGISTRY_HOME=str(DATA / "sparse-home"))
    env.pop("REGISTRY_DATABASE_URL", None)
    t = time.perf_counter()
    cli = subprocess.run([sys.executable, "-m", "registry", "verify"], env=env, capture_output=True, text=True)
    cli_s = time.perf_counter() - t
    assert cli.returncode == 0, cli.stdout + cli.stderr

    gbps = {k: total / GB / min(v) for k, v in runs.items() if v}
    rows = [
        ("`registry verify --deep` (blake3, all cores)", f"{gbps['deep']:.2f}", "1.00"),
        ("hashlib.sha256, file by file", f"{gbps['sha256']:.2f}", f"{gbps['deep'] / gbps['sha256']:.2f}x"),
    ]
    if "ms" in gbps:
        rows.append(("model-signing 1.1.1 default (sha256 per file)", f"{gbps['ms']:.2f}",
                     f"{gbps['deep'] / gbps['ms']:.2f}x"))
    onepass_ratio = gbps["onepass"] / gbps["sha256"]
    rehash_s = sparse_bytes / GB / gbps["deep"]
    load = os.getloadavg()[0]
    lines = [
        f"{total / GB:.2f} GB in {len(files)} random files, warm page cache, best of {args.repeat} interleaved runs, "
        f"{os.cpu_count()} cores, load average {load:.1f} at the end (the machine is shared: medians below).",
        "",
        "| re-verification | GB/s | registry's speed-up |",
        "|---|---|---|",
        *[f"| {a} | {b} | {c} |" for a, b, c in rows],
        "",
        "| ingest | GB/s | ratio |",
        "|---|---|---|",
        f"| one pass: sha256 + blake3 (+ git sha1 < 10 MiB), `hash_file` | {gbps['onepass']:.2f} | "
        f"{onepass_ratio:.0%} of sha256 alone |",
        f"| hashlib.sha256 alone | {gbps['sha256']:.2f} | 100% |",
        "",
        "| fast verify, unchanged store | seconds | ratio |",
        "|---|---|---|",
        f"| `verify()` service, {sparse_bytes / GB:.0f} GB in {report.blobs_checked} sparse blobs (stat cache, "
        f"0 hashed) | {min(fast_times):.3f} | 1 |",
        f"| `registry verify` CLI, same store (process start + imports included) | {cli_s:.2f} | |",
        f"| re-hashing it at the deep-verify rate measured above (what a tool without a stat cache does) "
        f"| {rehash_s:.0f} (estimated) | {rehash_s / min(fast_times):.0f}x slower |",
        "",
        f"Targets: deep verify >= 3 GB/s ({'met' if gbps['deep'] >= 3 else 'MISSED'}) and >= 4x model-signing "
        f"({'met' if 'ms' in gbps and gbps['deep'] / gbps['ms'] >= 4 else 'MISSED' if 'ms' in gbps else 'not measured'}); "
        f"ingest >= 90% of sha256 ({'met' if onepass_ratio >= 0.9 else 'MISSED'}); fast verify of 100 GB < 1 s "
        f"({'met' if min(fast_times) < 1 else 'MISSED'}).",
        "",
        f"On the 4x: model-signing hashes its files on a thread pool, so on 2 cores it runs sha256 on both, and "
        f"deep verify can beat it by at most blake3's per-core advantage: {core['blake3']:.2f} vs "
        f"{core['sha256']:.2f} GB/s in memory, one thread ({core['blake3'] / core['sha256']:.1f}x). Reading from the "
        f"page cache (mmap faults) and the other jobs sharing these 2 cores take the rest. Tried for deep verify: "
        f"blake3's own threads over one mmap per blob, one blob per core with the largest last on every core "
        f"(kept), reads into 256 KiB-8 MiB buffers, mmap with MADV_WILLNEED/MAP_POPULATE: the differences stayed "
        f"inside this machine's run-to-run noise.",
        "",
        "medians (GB/s): " + ", ".join(f"{k} {total / GB / statistics.median(v):.2f}" for k, v in runs.items() if v)
        + f"; one pass / sha256 {statistics.median(runs['sha256']) / statistics.median(runs['onepass']):.0%}; "
        + f"fast verify {statistics.median(fast_times):.3f} s",
        "",
        "all runs (s): " + "; ".join(f"{k} " + ", ".join(f"{x:.2f}" for x in v) for k, v in runs.items() if v)
        + "; fast " + ", ".join(f"{x:.3f}" for x in fast_times),
    ]
    text = "\n".join(lines)
    print()
    print(text)
    if args.write_docs:
        write_section(ROOT / "docs" / "benchmarks.md", "Hashing",
                      "Run: `python bench/hashing.py --write-docs` (needs `pip install model-signing pyopenssl`).\n\n"
                      + text)
    return 0


def write_section(doc: Path, title: str, body: str) -> None:
    """Replace only the body of ``## title`` (up to the next ``## ``), leaving the other sections alone."""
    text = doc.read_text() if doc.exists() else "# Benchmarks\n"
    head = f"## {title}\n"
    if head not in text:
        text = text.rstrip("\n") + f"\n\n{head}"
    start = text.index(head) + len(head)
    nxt = text.find("\n## ", start)
    end = len(text) if nxt == -1 else nxt + 1
    doc.write_text(text[:start] + "\n" + body.strip() + "\n\n" + text[end:].lstrip("\n"))


if __name__ == "__main__":
    sys.exit(main())
