"""Serve one 1 GiB safetensors file three ways, side by side, in one run, on loopback:

- ``registry serve`` (this project), from the catalog and the content-addressed store;
- Olah (PyPI ``olah``), offline, from a local git-LFS clone of the same repo (``mirrors-path``);
- nginx, serving the same bytes as a static file (the near-physical reference; ``sendfile on``).

Measured for each: GET throughput with 1 client and with 8 concurrent clients (``curl`` to /dev/null, so the
client is not the bottleneck), HEAD latency p50/p99 over a kept-alive connection, and the server's peak RSS
(sampled every 50 ms while 8 clients download). Every loop is bounded (curl --max-time, a fixed HEAD count).

    python bench/serve.py [--size-mib 1024] [--olah-python /tmp/venv-olah/bin/python]

Olah runs from its own virtualenv (its pins clash with ours): ``python3 -m venv /tmp/venv-olah &&
/tmp/venv-olah/bin/pip install olah``. nginx: ``apt-get install -y nginx``. Missing peers are reported, not faked.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))
REPO = "bench/big"
FILE = "model.safetensors"
PATH = f"/{REPO}/resolve/main/{FILE}"


@dataclass
class Result:
    server: str
    get_1_gbps: float = 0.0
    get_8_gbps: float = 0.0
    head_p50_ms: float = 0.0
    head_p99_ms: float = 0.0
    heads: int = 0
    peak_rss_mb: float = 0.0
    notes: list[str] = field(default_factory=list)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, proc: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise RuntimeError(f"port {port} did not open in {timeout}s")


def tree_rss_mb(pid: int) -> float:
    """RSS of a process and its children (nginx's master + worker; uvicorn is one process)."""
    total = 0
    pids = [pid]
    try:
        kids = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        pids += [int(k) for k in kids]
    except OSError:
        pass
    for p in pids:
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total / 1024


class RssSampler:
    def __init__(self, pid: int, limit_mb: float) -> None:
        self.pid, self.limit_mb, self.peak = pid, limit_mb, 0.0
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, tree_rss_mb(self.pid))
            if self.peak > self.limit_mb:  # a runaway peer must not take the machine down
                os.kill(self.pid, signal.SIGKILL)
                return
            time.sleep(0.05)

    def __enter__(self) -> "RssSampler":
        self._t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._t.join()


def curl_get(url: str, n: int, max_time: int) -> tuple[float, int]:
    """``n`` concurrent full downloads; returns (aggregate GB/s, bytes)."""
    cmd = ["curl", "-s", "-o", "/dev/null", "--max-time", str(max_time), "-w", "%{size_download}", url]
    t0 = time.perf_counter()
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True) for _ in range(n)]
    got = sum(int(float(p.communicate()[0] or 0)) for p in procs)
    wall = time.perf_counter() - t0
    return got / wall / 1e9, got


def head_latencies(port: int, count: int, timeout: float) -> list[float]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    out = []
    try:
        for _ in range(count):
            t0 = time.perf_counter()
            conn.request("HEAD", PATH)
            resp = conn.getresponse()
            resp.read()
            out.append((time.perf_counter() - t0) * 1000)
            if resp.status != 200:
                raise RuntimeError(f"HEAD answered {resp.status}")
    finally:
        conn.close()
    return out


def measure(servers: dict[str, tuple[int, int]], *, size: int, heads: int, rounds: int, olah_heads: int,
            olah_max_time: int) -> dict[str, Result]:
    """Interleaved rounds, so a noisy neighbour on a shared machine hits every server alike."""
    out = {name: Result(name) for name in servers}
    lat: dict[str, list[float]] = {name: [] for name in servers}
    one: dict[str, list[float]] = {name: [] for name in servers}
    for name, (port, _) in servers.items():  # warm-up: imports, first queries; not counted
        head_latencies(port, 3 if name == "olah" else 10, timeout=olah_max_time)
    for _ in range(rounds):
        for name, (port, _) in servers.items():
            n = max(1, olah_heads // rounds) if name == "olah" else heads // rounds
            lat[name] += head_latencies(port, n, timeout=olah_max_time)
    for i in range(rounds):
        for name, (port, _) in servers.items():
            if name == "olah" and i > 0:
                continue  # one bounded download is enough to know Olah's rate
            max_time = olah_max_time if name == "olah" else 60
            gbps, got = curl_get(f"http://127.0.0.1:{port}{PATH}", 1, max_time)
            one[name].append(gbps)
            if got < size:
                out[name].notes.append(f"1-client GET stopped at {got / 2**20:.0f} MiB ({max_time}s --max-time)")
    for name, (port, pid) in servers.items():  # Olah last: it holds each download in memory
        max_time = olah_max_time if name == "olah" else 60
        with RssSampler(pid, 12_000 if name == "olah" else 4_000) as sampler:
            gbps, got = curl_get(f"http://127.0.0.1:{port}{PATH}", 8, max_time)
        r = out[name]
        r.get_8_gbps, r.peak_rss_mb = gbps, sampler.peak
        if got < 8 * size:
            r.notes.append(f"8-client GET moved {got / 2**30:.2f} of 8 GiB in the {max_time}s limit")
        if sampler.peak > sampler.limit_mb:
            r.notes.append(f"killed: RSS passed {sampler.limit_mb:.0f} MB")
        samples = sorted(lat[name])
        r.heads = len(samples)
        r.head_p50_ms = statistics.median(samples)
        r.head_p99_ms = samples[max(0, int(len(samples) * 0.99) - 1)] if len(samples) >= 100 else samples[-1]
        r.get_1_gbps = statistics.median(one[name])
    return out


# ---- fixtures ---------------------------------------------------------------------------------------

def write_model(folder: Path, size_mib: int) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    n = size_mib * 2**20
    header = json.dumps({"w": {"dtype": "U8", "shape": [n], "data_offsets": [0, n]}}).encode()
    header += b" " * (-len(header) % 8)
    block = os.urandom(16 * 2**20)
    with open(folder / FILE, "wb") as f:
        f.write(struct.pack("<Q", len(header)) + header)
        for i in range(0, n, len(block)):
            f.write(block[: min(len(block), n - i)])
    (folder / "config.json").write_text(json.dumps({"model_type": "bert", "architectures": ["BertModel"]}))
    return folder


def registry_home(work: Path, model: Path) -> dict[str, str]:
    from sqlalchemy import select

    from registry.catalog.models import Model
    from registry.config import Settings
    from registry.services.add import add_folder
    from registry.services.context import Registry

    env = {"REGISTRY_HOME": str(work / "home"), "REGISTRY_DATABASE_URL": f"sqlite:///{work / 'home' / 'catalog.db'}"}
    reg = Registry.open(Settings.from_env(env))
    add_folder(reg, model, REPO)
    # The smoke path (register) is not what is measured here: mark the model registered directly.
    with reg.catalog.session() as session:
        session.scalars(select(Model).where(Model.name == REPO)).one().state = "registered"
    reg.close()
    return env


def olah_mirror(work: Path, model: Path) -> Path:
    """A git clone as git-lfs leaves it: pointer files in git, the objects in .git/lfs/objects."""
    from registry.hashing import hash_file, lfs_pointer

    root = work / "olah-mirrors"
    repo = root / "models" / REPO
    repo.mkdir(parents=True)
    git = ["git", "-C", str(repo), "-c", "user.email=bench@localhost", "-c", "user.name=bench"]
    subprocess.run(["git", "init", "-q", "-b", "main", str(repo)], check=True)
    shutil.copy(model / "config.json", repo / "config.json")
    digests = hash_file(model / FILE)
    (repo / FILE).write_bytes(lfs_pointer(digests.sha256, digests.size))
    (repo / ".gitattributes").write_text("*.safetensors filter=lfs diff=lfs merge=lfs -text\n")
    obj = repo / ".git" / "lfs" / "objects" / digests.sha256[:2] / digests.sha256[2:4] / digests.sha256
    obj.parent.mkdir(parents=True)
    os.link(model / FILE, obj)
    subprocess.run(git + ["add", "-A"], check=True)
    subprocess.run(git + ["commit", "-q", "-m", "bench"], check=True)
    return root


def start_ours(env: dict[str, str], port: int, log: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "registry", "serve", "--port", str(port)],
                            env={**os.environ, **env}, cwd=REPO_ROOT, stdout=log.open("w"), stderr=subprocess.STDOUT)


def start_olah(python: str, work: Path, mirrors: Path, port: int, log: Path) -> subprocess.Popen:
    from tests.olah_helpers import write_config

    conf = write_config(work, mirrors, port)
    cli = Path(python).parent / "olah-cli"
    return subprocess.Popen([str(cli), "-c", str(conf)], cwd=work, stdout=log.open("w"), stderr=subprocess.STDOUT)


def start_nginx(work: Path, model: Path, port: int, log: Path) -> subprocess.Popen:
    static = work / "static" / REPO / "resolve" / "main"
    static.mkdir(parents=True)
    os.link(model / FILE, static / FILE)
    conf = work / "nginx.conf"
    tmp = work / "nginx-tmp"
    tmp.mkdir()
    conf.write_text(f"""worker_processes 1;
daemon off;
pid {work / 'nginx.pid'};
error_log {work / 'nginx-error.log'};
events {{ worker_connections 256; }}
http {{
  access_log off; sendfile on; tcp_nopush on;
  client_body_temp_path {tmp}/b; proxy_temp_path {tmp}/p; fastcgi_temp_path {tmp}/f; uwsgi_temp_path {tmp}/u;
  scgi_temp_path {tmp}/s;
  server {{ listen 127.0.0.1:{port}; root {work / 'static'}; }}
}}
""")
    return subprocess.Popen(["nginx", "-c", str(conf)], stdout=log.open("w"), stderr=subprocess.STDOUT)


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=20)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size-mib", type=int, default=1024)
    ap.add_argument("--heads", type=int, default=500)
    ap.add_argument("--rounds", type=int, default=5, help="interleaved rounds of HEADs and 1-client GETs")
    ap.add_argument("--olah-python", default="/tmp/venv-olah/bin/python")
    ap.add_argument("--olah-max-time", type=int, default=90, help="seconds per Olah download (it is slow)")
    ap.add_argument("--olah-heads", type=int, default=10, help="Olah hashes the whole file on every HEAD")
    ap.add_argument("--work", type=Path, default=REPO_ROOT / "bench" / "_data" / "serve")
    args = ap.parse_args()

    work = args.work
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    size = args.size_mib * 2**20
    model = write_model(work / "model", args.size_mib)
    env = registry_home(work, model)
    results: list[Result] = []
    load0 = os.getloadavg()

    servers: list[tuple[str, object]] = [("registry serve", lambda p: start_ours(env, p, work / "ours.log"))]
    if Path(args.olah_python).exists():
        mirrors = olah_mirror(work, model)
        servers.append(("olah", lambda p: start_olah(args.olah_python, work, mirrors, p, work / "olah.log")))
    else:
        results.append(Result("olah", notes=[f"not run: {args.olah_python} missing (pip install olah in a venv)"]))
    if shutil.which("nginx"):
        servers.append(("nginx", lambda p: start_nginx(work, model, p, work / "nginx.log")))
    else:
        results.append(Result("nginx", notes=["not run: nginx is not installed (apt-get install -y nginx)"]))

    procs: dict[str, subprocess.Popen] = {}
    ports: dict[str, tuple[int, int]] = {}
    try:
        for name, start in servers:
            port = free_port()
            procs[name] = start(port)  # type: ignore[operator]
            try:
                wait_port(port, procs[name])
                ports[name] = (port, procs[name].pid)
            except Exception as exc:  # noqa: BLE001 - report the peer's failure, measure the others
                results.append(Result(name, notes=[f"failed to start: {exc}"]))
        # Olah last in the dict: its 8-client run is the memory-hungry one.
        order = {k: ports[k] for k in sorted(ports, key=lambda k: k == "olah")}
        measured = measure(order, size=size, heads=args.heads, rounds=args.rounds, olah_heads=args.olah_heads,
                           olah_max_time=args.olah_max_time)
        results = list(measured.values()) + results
    finally:
        for proc in procs.values():
            stop(proc)
    for r in results:
        print(json.dumps(asdict(r)), flush=True)

    by = {r.server: r for r in results}
    ours = by["registry serve"]
    print(f"load average before/after: {load0} / {os.getloadavg()}")
    print(f"\n{'server':16} {'GET 1 (GB/s)':>12} {'GET 8 (GB/s)':>12} {'HEAD p50 ms':>11} {'HEAD p99 ms':>11} "
          f"{'peak RSS MB':>11}  notes")
    for r in results:
        print(f"{r.server:16} {r.get_1_gbps:12.3f} {r.get_8_gbps:12.3f} {r.head_p50_ms:11.2f} {r.head_p99_ms:11.2f} "
              f"{r.peak_rss_mb:11.0f}  {'; '.join(r.notes)}")
    def ratio(a: float, b: float) -> str:
        return f"x{a / b:.2f}" if b else "n/a (peer moved nothing)"

    for peer in ("olah", "nginx"):
        p = by.get(peer)
        if p and p.get_1_gbps:
            print(f"ours / {peer}: GET 1 {ratio(ours.get_1_gbps, p.get_1_gbps)}, GET 8 {ratio(ours.get_8_gbps, p.get_8_gbps)}, "
                  f"HEAD p99 {ratio(ours.head_p99_ms, p.head_p99_ms)}, peak RSS {ratio(ours.peak_rss_mb, p.peak_rss_mb)}")
    (work / "results.json").write_text(json.dumps([asdict(r) for r in results], indent=1))
    for leftover in work.iterdir():  # keep results and logs; drop the GiB-sized copies
        if leftover.is_dir():
            shutil.rmtree(leftover, ignore_errors=True)
        elif leftover.suffix not in (".json", ".log"):
            leftover.unlink()
    return 0


if __name__ == "__main__":
    sys.exit(main())
