"""A real Olah (PyPI ``olah``, a self-hosted Hub mirror) serving git-LFS clones offline, as its README says:
"If you have already cloned some Git repositories, you can place them in [mirrors-path] ... models can be
placed under ``./mirrors_dir/models/organization/repository``", with ``offline = true`` in its config.

The clones are real: a source repo is committed with git-lfs (pointer files in git, the objects under
``.git/lfs/objects/<aa>/<bb>/<sha256>``), then ``git clone``d over file://, which makes git-lfs fetch the
objects. git runs with a private global config (``GIT_CONFIG_GLOBAL``), so the user's is never touched.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

LFS_PATTERNS = ("*.safetensors", "*.bin", "*.pt")


def have_git_lfs() -> bool:
    return shutil.which("git") is not None and shutil.which("git-lfs") is not None


def git_env(work: Path) -> dict[str, str]:
    config = work.resolve() / "gitconfig"  # absolute: git runs in other folders
    if not config.exists():
        config.write_text("[user]\n\temail = tests@localhost\n\tname = tests\n[init]\n\tdefaultBranch = main\n")
    env = {**os.environ, "GIT_CONFIG_GLOBAL": str(config), "GIT_CONFIG_NOSYSTEM": "1", "GIT_TERMINAL_PROMPT": "0"}
    subprocess.run(["git", "lfs", "install", "--skip-repo"], env=env, check=True, capture_output=True)
    return env


def _git(env: dict[str, str], *args: str, cwd: Path | None = None) -> str:
    proc = subprocess.run(["git", *args], env=env, cwd=cwd, capture_output=True, text=True)
    if proc.returncode:
        raise RuntimeError(f"git {' '.join(args)} failed: {proc.stderr.strip()}")
    return proc.stdout.strip()


def mirror_repo(work: Path, mirrors: Path, repo_id: str, folder: Path) -> tuple[Path, str]:
    """Commit ``folder`` into a git-lfs repo and clone it to ``mirrors/models/<repo_id>``; (clone, commit)."""
    work, mirrors = work.resolve(), mirrors.resolve()
    env = git_env(work)
    source = work / "sources" / repo_id
    shutil.copytree(folder, source)
    _git(env, "init", "-q", cwd=source)
    _git(env, "lfs", "track", *LFS_PATTERNS, cwd=source)
    _git(env, "add", "-A", cwd=source)
    _git(env, "commit", "-q", "-m", f"{repo_id} for olah", cwd=source)
    clone = mirrors / "models" / repo_id
    clone.parent.mkdir(parents=True, exist_ok=True)
    _git(env, "clone", "-q", f"file://{source}", str(clone))
    return clone, _git(env, "rev-parse", "HEAD", cwd=clone)


def lfs_object(clone: Path, sha256: str) -> Path:
    return clone / ".git" / "lfs" / "objects" / sha256[:2] / sha256[2:4] / sha256


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_config(work: Path, mirrors: Path, port: int) -> Path:
    """Olah's TOML config: offline, on 127.0.0.1:``port``, serving the clones under ``mirrors``."""
    conf = work / "olah.toml"
    conf.write_text(f"""[basic]
host = "127.0.0.1"
port = {port}
mirror-netloc = "127.0.0.1:{port}"
mirror-lfs-netloc = "127.0.0.1:{port}"
repos-path = "{work / 'olah-repos'}"
mirrors-path = ["{mirrors}"]
[accessibility]
offline = true
""")
    return conf


class Olah:
    """``python -m olah.server`` on a free loopback port, offline, serving ``mirrors``."""

    def __init__(self, work: Path, mirrors: Path) -> None:
        self.work = work.resolve()
        self.mirrors = mirrors.resolve()
        self.port = free_port()
        self.log = work / "olah.log"
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, ready_repo: str, timeout: float = 60) -> "Olah":
        conf = write_config(self.work, self.mirrors, self.port)
        env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
        self.proc = subprocess.Popen([sys.executable, "-m", "olah.server", "-c", str(conf)], cwd=self.work, env=env,
                                     stdout=self.log.open("w"), stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"olah exited with {self.proc.returncode}: {self.log.read_text()[-3000:]}")
            try:
                if httpx.get(f"{self.url}/api/models/{ready_repo}/revision/main", timeout=2).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"olah did not answer within {timeout}s: {self.log.read_text()[-3000:]}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None
