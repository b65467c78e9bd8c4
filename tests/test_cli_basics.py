"""The CLI's contract: commands listed, stable --json keys, documented exit codes, and progress bars on
stderr only when it is a terminal (a real pseudo-terminal here, not a mock)."""

from __future__ import annotations

import fcntl
import os
import pty
import struct
import subprocess
import sys
import termios
import threading

import pytest

from tests.conftest import make_bert_like

ADD_KEYS = {"name", "commit", "revision", "state", "family", "inferred", "manifest_source", "root_digest", "files",
            "bytes", "new_blobs", "components", "pickles", "family_rule", "disagreements"}
SUMMARY_KEYS = {"name", "commit", "refs", "family", "state", "state_reason", "inferred", "root_digest", "files",
                "bytes", "created_at"}
ERROR_KEYS = {"error", "kind", "message", "exit_code", "details"}


def test_help_lists_the_commands(cli):
    r = cli("--help")
    assert r.exit_code == 0
    for command in ("add", "list", "show", "verify", "db"):
        assert command in r.stdout


def test_empty_catalog(cli):
    r = cli("list")
    assert r.exit_code == 0 and "no models yet" in r.stdout
    assert cli("list", "--json").json() == {"models": []}
    assert cli("verify", "--json").json()["ok"] is True


def test_json_keys_are_stable(cli, tmp_path):
    added = cli("add", make_bert_like(tmp_path / "m"), "--name", "acme/tiny", "--json").json()
    assert set(added) == ADD_KEYS | {"registration"}
    assert set(added["registration"]) >= {"state", "smoke", "message"}
    assert set(added["components"][0]) == {"role", "repo", "commit", "files", "bytes", "pinned"}
    [listed] = cli("list", "--json").json()["models"]
    assert set(listed) == SUMMARY_KEYS
    shown = cli("show", "acme/tiny", "--json").json()
    assert set(shown) == {"summary", "manifest_source", "components", "lineage", "smoke_runs", "family_rule",
                          "disagreements", "first_use", "first_use_source"}
    assert shown["family_rule"].startswith("family transformers: config.json")
    assert set(shown["summary"]) == SUMMARY_KEYS
    assert set(shown["components"][0]) == {"role", "repo", "commit", "required", "pinned", "files"}
    assert set(shown["components"][0]["files"][0]) == {"path", "size", "sha256", "blake3", "git_oid", "lfs"}


def test_errors_as_json_with_their_exit_codes(cli, tmp_path):
    r = cli("show", "acme/nope", "--json")
    assert r.exit_code == 3 and set(r.json()) == ERROR_KEYS
    assert r.json()["error"] == "ModelNotFound" and "registry list" in r.json()["message"]
    r = cli("show", "acme/nope")
    assert r.exit_code == 3 and r.stdout == "" and r.stderr.startswith("registry: error: no model named")
    r = cli("add", tmp_path / "nope", "--name", "acme/x")
    assert r.exit_code == 2 and "no such folder" in r.stderr
    r = cli("add", tmp_path)  # --name is required: a usage error from the parser
    assert r.exit_code == 2


def _run_on_a_terminal(*args: str) -> tuple[int, str, str]:
    """Run ``python -m registry ARGS`` with stderr on a pseudo-terminal; returns (code, stdout, terminal)."""
    try:
        master, slave = pty.openpty()
    except OSError as exc:  # containers without /dev/pts
        pytest.skip(f"no pseudo-terminal here: {exc}")
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 120, 0, 0))  # a real terminal has a size
    chunks: list[bytes] = []

    def drain() -> None:
        while True:
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: the terminal's other side is closed
                return
            if not data:
                return
            chunks.append(data)

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    proc = subprocess.run([sys.executable, "-m", "registry", *args], stdin=subprocess.DEVNULL,
                          stdout=subprocess.PIPE, stderr=slave, timeout=300)
    os.close(slave)
    reader.join(timeout=30)
    os.close(master)
    return proc.returncode, proc.stdout.decode(), b"".join(chunks).decode(errors="replace")


def test_progress_bars_on_a_terminal_only(cli, tmp_path):
    folder = make_bert_like(tmp_path / "m", hidden=512)  # 2 MiB of weights: one bar per large file
    code, out, term = _run_on_a_terminal("add", str(folder), "--name", "acme/tiny")
    assert code == 0, term
    assert "100%" in term and "model.safetensors" in term  # the overall bar and the large file's bar
    assert "verified" in out and "100%" not in out  # stdout stays clean
    code, out, term = _run_on_a_terminal("verify", "--deep")
    assert code == 0 and "100%" in term and "clean" in out
    # not a terminal: not a byte of progress
    r = cli("verify", "--deep")
    assert r.exit_code == 0 and r.stderr == ""
    r = cli("add", folder, "--name", "acme/tiny")
    assert r.exit_code == 0 and "%" not in r.stderr
