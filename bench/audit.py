"""The fleet at scale: `registry audit --json`, the `/ui` first page and `audit --scan`, on SQLite and Postgres.

Builds catalogs of N models (1k and 10k by default) with F files each (100: 1 000 000 files at 10k) and D
deployments each (5: 50 000) with bulk inserts (sqlite3 executemany / psycopg COPY, not CLI calls), spread over
500 nodes, some verified and drifted, 5 % stale, 1 % quarantined. Then, per backend and size:

- `registry audit --json` as a user runs it (a fresh process, no re-hash), median of rounds, and the service alone;
- `GET /ui/` (the fleet's first page) against `registry serve` on loopback: median and p95 of kept-alive requests,
  and one filtered page (`?state=stale`) and a deep page;
- the same two with the indexes of migrations/versions/0005_audit.py dropped, to show what they buy;
- `registry audit --scan` of an HF cache of S snapshots (1 000 by default: S models' files as blobs + links, 80 %
  named by sha256, 20 % by git sha1), side by side with `hf cache ls` (huggingface_hub's scan of the same cache;
  it only reads the layout, as our scan does without --verify); and with `ix_files_git_oid` dropped.

    python bench/audit.py [--sizes 1000,10000] [--backends sqlite,postgres] [--snapshots 1000] [--write-docs]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from registry.services.deploy import cache_folder_name  # noqa: E402

PG_ADMIN = os.environ.get("REGISTRY_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
INDEXES_0005 = {"ix_deployments_removed_at_node_id": ("deployments", "removed_at, node, id"),
                "ix_events_at": ("events", "at"), "ix_files_git_oid": ("files", "git_oid")}
NODES = 500


def hexd(n: int) -> str:
    return os.urandom(n).hex()


@dataclass
class Catalog:
    models: list[tuple[int, str, str, int]]  # (model id, name, commit, revision id)
    files: dict[int, list[tuple[str, int, str, str, bool]]]  # revision id -> (path, size, sha256, git_oid, lfs)


def rows(n_models: int, files_per: int, deps_per: int, seed: int = 7) -> tuple[dict[str, list[tuple]], Catalog]:
    """Every table's rows; models 20k and 20k+1 (k: every 20th) share a name: the first is stale."""
    random.seed(seed)
    t: dict[str, list[tuple]] = {k: [] for k in ("repos", "revisions", "refs", "blobs", "files", "models", "components",
                                                 "component_files", "deployments", "events")}
    cat = Catalog([], {})
    fid = 0
    comp_id = 0
    repo_of: dict[str, int] = {}
    for i in range(1, n_models + 1):
        number = (i - 1) if i % 20 == 1 and i > 1 else i
        name = f"org{number % 97:02d}/model-{number:06d}"
        if name not in repo_of:
            repo_of[name] = len(repo_of) + 1
            t["repos"].append((repo_of[name], name, "model"))
        commit = hexd(20)
        t["revisions"].append((i, repo_of[name], commit, "bench"))
        state = "quarantined" if i % 100 == 50 else "registered"
        t["models"].append((i, name, i, "transformers", state, "bench: smoke outputs differ" if state == "quarantined"
                            else None, False, "{}", hexd(32), "2026-01-01 00:00:00"))
        cat.models.append((i, name, commit, i))
        files = []
        for c, role in enumerate(("config", "weights")):
            comp_id += 1
            t["components"].append((comp_id, i, c, role, i, True, False))
            for j in range(files_per // 2):
                fid += 1
                sha, git, lfs = hexd(32), hexd(20), (j % 5 != 0)
                path = f"{role}/file-{j:03d}.{'safetensors' if lfs else 'json'}"
                size = 64 + (j % 7)
                t["blobs"].append((sha, size, hexd(32), None if lfs else git))
                t["files"].append((fid, i, path, size, sha, git, lfs))
                t["component_files"].append((comp_id, fid))
                files.append((path, size, sha, git, lfs))
        cat.files[i] = files
        t["events"].append((len(t["events"]) + 1, "bench", "ingest", "pull", name, "{}"))
    did = 0
    for mid, name, commit, _ in cat.models:
        for d in range(deps_per):
            did += 1
            verified = did % 3 == 0
            vs = ("drifted" if did % 50 == 0 else "missing" if did % 97 == 0 else "ok") if verified else None
            t["deployments"].append((did, mid, f"node-{(mid * 7 + d) % NODES:04d}", f"/models/{name}/{d}", "dir",
                                     commit, hexd(32), "bench", "2026-01-02 00:00:00" if verified else None,
                                     "bench" if verified else None, vs,
                                     json.dumps({"changed": ["weights/file-001.safetensors (content differs)"]})
                                     if vs == "drifted" else None))
            t["events"].append((len(t["events"]) + 1, "bench", f"node-{(mid * 7 + d) % NODES:04d}", "deploy", name, "{}"))
    return t, cat


COLUMNS = {
    "repos": "id, repo_id, repo_type", "revisions": "id, repo_id, commit_sha, source",
    "blobs": "sha256, size, blake3, git_sha1", "files": "id, revision_id, path, size, blob_sha256, git_oid, lfs",
    "models": "id, name, revision_id, family, state, state_reason, inferred, manifest, root_digest, updated_at",
    "components": "id, model_id, position, role, revision_id, required, pinned",
    "component_files": "component_id, file_id",
    "deployments": "id, model_id, node, path, layout, commit_sha, root_digest, actor, verified_at, verified_by, "
                   "verify_state, verify_problems",
    "events": "id, actor, host, action, subject, details",
}
ORDER = ["repos", "revisions", "blobs", "files", "models", "components", "component_files", "deployments", "events"]


def load_sqlite(db: Path, t: dict[str, list[tuple]]) -> None:
    import sqlite3

    conn = sqlite3.connect(db)
    conn.execute("PRAGMA synchronous=OFF")
    conn.execute("PRAGMA foreign_keys=OFF")  # rows are consistent by construction; checks would only slow the load
    with conn:
        for table in ORDER:
            cols = COLUMNS[table]
            marks = ", ".join("?" * len(cols.split(",")))
            conn.executemany(f"INSERT INTO {table} ({cols}) VALUES ({marks})", t[table])
    conn.execute("ANALYZE")
    conn.close()


def load_postgres(url: str, t: dict[str, list[tuple]]) -> None:
    import psycopg

    with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://")) as conn:
        with conn.cursor() as cur:
            for table in ORDER:
                with cur.copy(f"COPY {table} ({COLUMNS[table]}) FROM STDIN") as copy:
                    for row in t[table]:
                        copy.write_row(row)
                if table not in ("blobs", "component_files"):
                    cur.execute(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT max(id) FROM {table}))")
        conn.commit()
        conn.autocommit = True
        conn.execute("ANALYZE")


@contextlib.contextmanager
def backend(kind: str, work: Path) -> Iterator[str]:
    if kind == "sqlite":
        yield f"sqlite:///{work / 'home' / 'catalog.db'}"
        return
    import psycopg

    name = f"bench_audit_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield PG_ADMIN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://") + f"/{name}"
    finally:
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def env_for(work: Path, url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REGISTRY_", "HF_"))}
    env.update({"REGISTRY_HOME": str(work / "home"), "REGISTRY_DATABASE_URL": url, "REGISTRY_NODE": "bench-host",
                "HF_HUB_DISABLE_TELEMETRY": "1", "HF_HUB_DISABLE_UPDATE_CHECK": "1", "PYTHONPATH": str(ROOT)})
    return env


def timed(cmd: list[str], env: dict[str, str], rounds: int) -> tuple[float, list[float], str]:
    times, out = [], ""
    for _ in range(rounds):
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
        times.append(time.perf_counter() - t0)
        if proc.returncode not in (0, 1):
            raise RuntimeError(f"{cmd} failed ({proc.returncode}): {proc.stderr[-2000:]}")
        out = proc.stdout
    return statistics.median(times), times, out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def served(env: dict[str, str]) -> Iterator[int]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "registry", "serve", "--port", str(port)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while True:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
            break
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"serve did not start: {proc.stderr.read().decode()[-2000:] if proc.stderr else ''}")
        time.sleep(0.1)
    try:
        yield port
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def page_latency(port: int, path: str, n: int) -> tuple[float, float]:
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    times = []
    for i in range(n + 2):
        t0 = time.perf_counter()
        conn.request("GET", path)
        resp = conn.getresponse()
        body = resp.read()
        if resp.status != 200 or b"<table" not in body:
            raise RuntimeError(f"GET {path}: {resp.status}")
        if i >= 2:  # two warm-up requests
            times.append((time.perf_counter() - t0) * 1000)
    conn.close()
    times.sort()
    return statistics.median(times), times[int(len(times) * 0.95) - 1]


def drop_indexes(url: str, names: list[str]) -> None:
    from sqlalchemy import create_engine, text

    eng = create_engine(url)
    with eng.begin() as conn:
        for name in names:
            conn.execute(text(f"DROP INDEX IF EXISTS {name}"))
    eng.dispose()


def create_indexes(url: str, names: list[str]) -> None:
    from sqlalchemy import create_engine, text

    eng = create_engine(url)
    with eng.begin() as conn:
        for name in names:
            table, cols = INDEXES_0005[name]
            conn.execute(text(f"CREATE INDEX IF NOT EXISTS {name} ON {table} ({cols})"))
    eng.dispose()


def service_audit_s(env: dict[str, str], rounds: int) -> float:
    code = ("import time, os\nfrom registry.config import Settings\nfrom registry.services.context import Registry\n"
            "from registry.services.audit import audit\nreg = Registry.open(Settings.from_env())\nts=[]\n"
            f"for _ in range({rounds}):\n    t=time.perf_counter(); r=audit(reg); ts.append(time.perf_counter()-t)\n"
            "ts.sort(); print(ts[len(ts)//2], len(r.rows))")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=600)
    if out.returncode:
        raise RuntimeError(out.stderr[-2000:])
    return float(out.stdout.split()[0])


def build_cache(cache: Path, cat: Catalog, snapshots: int) -> int:
    """S snapshots of catalogued models, laid out as huggingface_hub does; 5 % with one blob renamed (differs)
    and 5 % under repos the catalog does not know. Returns the number of snapshot files."""
    count = 0
    for k, (mid, name, commit, rid) in enumerate(cat.models[:snapshots]):
        unknown = k % 20 == 19  # a repo and files the catalog has never seen
        repo = name if not unknown else name.replace("/", "/unknown-")
        folder = cache / cache_folder_name(repo)
        snap = folder / "snapshots" / commit
        (folder / "blobs").mkdir(parents=True, exist_ok=True)
        (folder / "refs").mkdir(exist_ok=True)
        (folder / "refs" / "main").write_text(commit)
        for n, (path, size, sha, git, lfs) in enumerate(cat.files[rid]):
            etag = sha if lfs else git
            if unknown:
                etag = hexd(32) if lfs else hexd(20)
            elif k % 20 == 7 and n == 0:
                etag = hexd(32)  # a different blob under this path: the model differs
            blob = folder / "blobs" / etag
            if not blob.exists():
                blob.write_bytes(b"x" * size)
            link = snap / path
            link.parent.mkdir(parents=True, exist_ok=True)
            os.symlink(os.path.relpath(blob, link.parent), link)
            count += 1
    return count


@dataclass
class Measure:
    backend: str
    models: int
    files: int
    deployments: int
    load_s: float = 0.0
    audit_cli_s: float = 0.0
    audit_cli_all: list[float] = field(default_factory=list)
    audit_service_s: float = 0.0
    audit_rows: int = 0
    ui_p50_ms: float = 0.0
    ui_p95_ms: float = 0.0
    ui_stale_p50_ms: float = 0.0
    ui_deep_p50_ms: float = 0.0
    noidx_audit_cli_s: float = 0.0
    noidx_ui_p50_ms: float = 0.0
    noidx_ui_stale_p50_ms: float = 0.0
    scan_snapshots: int = 0
    scan_files: int = 0
    scan_s: float = 0.0
    scan_noidx_s: float = 0.0
    hf_cache_ls_s: float = 0.0
    scan_verdicts: dict = field(default_factory=dict)


def measure(kind: str, n: int, files_per: int, deps_per: int, snapshots: int, rounds: int) -> Measure:
    with tempfile.TemporaryDirectory(prefix="bench-audit-", dir=os.environ.get("BENCH_TMP")) as tmp:
        work = Path(tmp)
        with backend(kind, work) as url:
            env = env_for(work, url)
            subprocess.run([sys.executable, "-m", "registry", "db", "upgrade"], env=env, check=True,
                           capture_output=True, timeout=300)
            t, cat = rows(n, files_per, deps_per)
            m = Measure(kind, n, len(t["files"]), len(t["deployments"]))
            t0 = time.perf_counter()
            if kind == "sqlite":
                load_sqlite(work / "home" / "catalog.db", t)
            else:
                load_postgres(url, t)
            m.load_s = time.perf_counter() - t0
            del t
            cmd = [sys.executable, "-m", "registry", "audit", "--json"]
            m.audit_cli_s, m.audit_cli_all, out = timed(cmd, env, rounds)
            m.audit_rows = len(json.loads(out)["deployments"])
            m.audit_service_s = service_audit_s(env, rounds)
            with served(env) as port:
                m.ui_p50_ms, m.ui_p95_ms = page_latency(port, "/ui/", 20)
                m.ui_stale_p50_ms, _ = page_latency(port, "/ui/?state=stale", 10)
                m.ui_deep_p50_ms, _ = page_latency(port, f"/ui/?page={max(1, m.deployments // 50 - 1)}", 10)
            cache = work / "hub"
            m.scan_snapshots = min(snapshots, n)
            m.scan_files = build_cache(cache, cat, m.scan_snapshots)
            scan_cmd = [sys.executable, "-m", "registry", "audit", "--scan", str(cache), "--json"]
            m.scan_s, _, out = timed(scan_cmd, env, rounds)
            m.scan_verdicts = _verdicts(out)
            hf = shutil.which("hf") or str(Path(sys.executable).with_name("hf"))
            m.hf_cache_ls_s, _, _ = timed([hf, "cache", "ls", "--cache-dir", str(cache)], env, rounds)
            drop_indexes(url, list(INDEXES_0005))
            m.noidx_audit_cli_s, _, _ = timed(cmd, env, rounds)
            with served(env) as port:
                m.noidx_ui_p50_ms, _ = page_latency(port, "/ui/", 10)
                m.noidx_ui_stale_p50_ms, _ = page_latency(port, "/ui/?state=stale", 5)
            m.scan_noidx_s, _, _ = timed(scan_cmd, env, 1)
            create_indexes(url, list(INDEXES_0005))
    return m


def _verdicts(out: str) -> dict:
    counts: dict[str, int] = {}
    for mdl in json.loads(out)["models"]:
        counts[mdl["verdict"]] = counts.get(mdl["verdict"], 0) + 1
    return counts


def markdown(results: list[Measure], load: str) -> str:
    lines = [f"`python bench/audit.py` ({load}). Catalogs built with bulk inserts; each figure a median of a fresh "
             "`registry` process (process start and imports included) or of kept-alive HTTP requests to "
             "`registry serve`. The scanned HF cache holds links and small blobs named as huggingface_hub names them "
             "(80 % sha256, 20 % git sha1); 5 % of its snapshots differ from the catalog, 5 % are unknown repos.", "",
             "| backend | models | files | deployments | `audit --json` s (service s) | `/ui/` p50 / p95 ms | "
             "`/ui/?state=stale` ms | last page ms | scan of snapshots (files) s | `hf cache ls` s | ratio |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for m in results:
        lines.append(f"| {m.backend} | {m.models:,} | {m.files:,} | {m.deployments:,} | {m.audit_cli_s:.2f} "
                     f"({m.audit_service_s:.2f}) | {m.ui_p50_ms:.0f} / {m.ui_p95_ms:.0f} | {m.ui_stale_p50_ms:.0f} | "
                     f"{m.ui_deep_p50_ms:.0f} | {m.scan_s:.2f} ({m.scan_snapshots:,} / {m.scan_files:,}) | "
                     f"{m.hf_cache_ls_s:.2f} | {m.hf_cache_ls_s / m.scan_s:.2f}x |")
    lines += ["", "Without the indexes of `0005_audit` (dropped, same catalog):", "",
              "| backend | models | `audit --json` s: with / without | `/ui/` ms: with / without | "
              "`?state=stale` ms: with / without | scan s: with / without `ix_files_git_oid` |", "|---|---|---|---|---|---|"]
    for m in results:
        lines.append(f"| {m.backend} | {m.models:,} | {m.audit_cli_s:.2f} / {m.noidx_audit_cli_s:.2f} | "
                     f"{m.ui_p50_ms:.0f} / {m.noidx_ui_p50_ms:.0f} | {m.ui_stale_p50_ms:.0f} / "
                     f"{m.noidx_ui_stale_p50_ms:.0f} | {m.scan_s:.2f} / {m.scan_noidx_s:.2f} |")
    by = {(m.backend, m.models): m for m in results}
    sizes = sorted({m.models for m in results})
    big = [m for m in results if m.models == max(sizes)]
    if big:
        def verdict(ok: bool) -> str:
            return "met" if ok else "MISSED"

        audit_s = ", ".join(f"{m.backend} {m.audit_cli_s:.2f} s" for m in big)
        ui_ms = ", ".join(f"{m.backend} {m.ui_p50_ms:.0f} ms (p95 {m.ui_p95_ms:.0f})" for m in big)
        scan_s = ", ".join(f"{m.backend} {m.scan_s:.2f} s ({m.hf_cache_ls_s / m.scan_s:.2f}x `hf cache ls`)"
                           for m in big)
        lines += ["", f"Targets at {max(sizes):,} models: `audit --json` < 2 s: "
                  f"{verdict(all(m.audit_cli_s < 2 for m in big))} ({audit_s}); `/ui/` first page < 200 ms: "
                  f"{verdict(all(m.ui_p50_ms < 200 for m in big))} ({ui_ms}); scan of "
                  f"{big[0].scan_snapshots:,} snapshots < 5 s: {verdict(all(m.scan_s < 5 for m in big))} ({scan_s})."]
        lines += ["", "What the indexes do (the second table): `ix_deployments_removed_at_node_id` lets the fleet query "
                  "read live deployments by node in deployment order straight from the index, so the first page "
                  "reads 50 rows instead of sorting all of them, and `audit` walks them without a sort; "
                  "`ix_files_git_oid` turns the scan's lookups of git-sha1-named blobs into index probes "
                  "(without it each lookup reads the files table); `ix_events_at` serves `history --since` (not "
                  "timed here). The counts by state (the chips above the table, and the page count) stay one "
                  "GROUP BY over the live deployments: that is what still grows with the fleet."]
    if len(sizes) >= 2:
        lo, hi = sizes[0], sizes[-1]
        lines += ["", f"Growth from {lo:,} to {hi:,} models ({hi // lo}x the rows):", ""]
        for kind in sorted({m.backend for m in results}):
            a, b = by.get((kind, lo)), by.get((kind, hi))
            if a and b:
                lines.append(f"- {kind}: `audit --json` {b.audit_cli_s / a.audit_cli_s:.1f}x "
                             f"(service {b.audit_service_s / a.audit_service_s:.1f}x), `/ui/` first page "
                             f"{b.ui_p50_ms / a.ui_p50_ms:.1f}x, filtered page {b.ui_stale_p50_ms / a.ui_stale_p50_ms:.1f}x")
    return "\n".join(lines)


def write_section(path: Path, title: str, body: str) -> None:
    text = path.read_text()
    head = f"## {title}\n"
    if head in text:
        start = text.index(head)
        nxt = text.find("\n## ", start + len(head))
        text = text[:start] + head + "\n" + body.rstrip() + "\n" + (text[nxt:] if nxt != -1 else "")
    else:
        text = text.rstrip() + "\n\n" + head + "\n" + body.rstrip() + "\n"
    path.write_text(text)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="1000,10000")
    ap.add_argument("--backends", default="sqlite,postgres")
    ap.add_argument("--files-per-model", type=int, default=100)
    ap.add_argument("--deployments-per-model", type=int, default=5)
    ap.add_argument("--snapshots", type=int, default=1000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--write-docs", action="store_true")
    ap.add_argument("--from-log", type=Path, help="rebuild the tables from the JSON lines of an earlier run's output")
    args = ap.parse_args()
    results = []
    if args.from_log:
        for line in args.from_log.read_text().splitlines():
            if line.startswith("{"):
                results.append(Measure(**json.loads(line)))
        import re

        found = re.search(r"load average [\d.]+ at the end, \d+ cores", args.from_log.read_text())
        text = markdown(results, found.group(0) if found else f"rebuilt from {args.from_log.name}")
        print(text)
        if args.write_docs:
            write_section(ROOT / "docs" / "benchmarks.md", "Audit, fleet page and scan", text)
        return
    for kind in args.backends.split(","):
        for n in map(int, args.sizes.split(",")):
            m = measure(kind, n, args.files_per_model, args.deployments_per_model, args.snapshots, args.rounds)
            print(json.dumps(m.__dict__), flush=True)
            results.append(m)
    load = f"load average {os.getloadavg()[0]:.1f} at the end, {os.cpu_count()} cores"
    text = markdown(results, load)
    print(text)
    if args.write_docs:
        write_section(ROOT / "docs" / "benchmarks.md", "Audit, fleet page and scan", text)


if __name__ == "__main__":
    main()
