"""The ``registry`` command. Only ``main()`` turns exceptions into exit codes."""

from __future__ import annotations

import os
import sys
import traceback
from typing import Annotated

import typer

from registry.cli.base import OPENED, app, echo, emit_json, print_registry_notes
from registry.cli.progress import set_quiet, silence_library_bars
from registry.config import package_version
from registry.errors import RegistryError

# Each module registers its commands on `app`.
from registry.cli import catalog_cmds as _catalog_cmds  # noqa: F401,E402
from registry.cli import db_cmds as _db_cmds  # noqa: F401,E402
from registry.cli import load_cmds as _load_cmds  # noqa: F401,E402
from registry.cli import pull_cmds as _pull_cmds  # noqa: F401,E402
from registry.cli import gc_cmds as _gc_cmds  # noqa: F401,E402
from registry.cli import serve_cmds as _serve_cmds  # noqa: F401,E402
from registry.cli import oci_cmds as _oci_cmds  # noqa: F401,E402
from registry.cli import sign_cmds as _sign_cmds  # noqa: F401,E402
from registry.cli import audit_cmds as _audit_cmds  # noqa: F401,E402
from registry.cli import undeploy_cmds as _undeploy_cmds  # noqa: F401,E402
from registry.cli import history_cmds as _history_cmds  # noqa: F401,E402


# An unexpected exception is a bug in the registry, not a finding: its own code (sysexits' EX_SOFTWARE),
# never 1, which means "verify found problems".
BUG_EXIT_CODE = 70


@app.callback(invoke_without_command=True)
def _global_options(
    ctx: typer.Context,
    version: Annotated[bool, typer.Option("--version", is_eager=True, help="Print the registry's version and exit.")] = False,
    debug: Annotated[bool, typer.Option("--debug", help="Print tracebacks of errors (also REGISTRY_DEBUG=1).")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars and no notes on stderr; errors still print.")] = False,
) -> None:
    """A model artifact registry: complete, verified models, pulled, loaded, served and audited."""
    if version:
        echo(f"registry {package_version()}")
        raise typer.Exit(0)
    if ctx.invoked_subcommand is None:
        echo(ctx.get_help())
        raise typer.Exit(0)


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    # --debug is read before parsing: a parse-time failure should show its traceback too
    debug = "--debug" in args or os.environ.get("REGISTRY_DEBUG") == "1"
    # like --debug, --quiet is taken wherever it stands (`registry pull X --quiet` as `hf download X --quiet`)
    set_quiet("--quiet" in args or "-q" in args)
    silence_library_bars()
    args = [a for a in args if a not in ("--debug", "--quiet", "-q")]
    want_json = "--json" in args
    OPENED.clear()
    try:
        return _run(args, debug=debug, want_json=want_json)
    finally:
        print_registry_notes()


def _run(args: list[str], *, debug: bool, want_json: bool) -> int:
    try:
        # standalone mode: typer/click print usage errors themselves and exit 2 through SystemExit;
        # our own errors propagate to here.
        app(args=args, prog_name="registry", standalone_mode=True)
        return 0
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except RegistryError as exc:
        if debug:
            traceback.print_exc()
        if want_json:
            emit_json(exc.to_dict())
        print(f"registry: error: {exc.message}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("registry: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - the one place that turns a bug into a clear line and exit 70
        mapped = _environment_error(exc)
        if mapped is not None:
            if debug:
                traceback.print_exc()
            if want_json:
                emit_json(mapped.to_dict())
            print(f"registry: error: {mapped.message}", file=sys.stderr)
            return mapped.exit_code
        if debug:
            traceback.print_exc()
        detail = f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
        if want_json:
            emit_json({"error": "InternalError", "kind": "bug", "message": detail, "exit_code": BUG_EXIT_CODE,
                       "details": {}})
        print(f"registry: internal error ({detail}): this is a bug in the registry; rerun with --debug "
              f"(registry --debug {' '.join(args)}) and report the traceback", file=sys.stderr)
        return BUG_EXIT_CODE


def _environment_error(exc: BaseException) -> RegistryError | None:
    """A full disk is the environment's fault, not a bug: ENOSPC from any write, or SQLITE_FULL from SQLite's
    own writes (the stat cache's, the catalog's: registry/catalog/engine.py maps the catalog's with its name)."""
    import errno
    import sqlite3

    from registry.errors import StorageError

    seen = exc
    for _ in range(5):  # the exception, and what it wraps (sqlalchemy's .orig, a __cause__)
        if isinstance(seen, OSError) and seen.errno in (errno.ENOSPC, errno.EDQUOT):
            return StorageError(f"no space left on the device ({seen}); free space and run the command again "
                                "(nothing partial was recorded)", details={"errno": seen.errno})
        if isinstance(seen, sqlite3.OperationalError) and "database or disk is full" in str(seen):
            return StorageError(f"no space left for a database of the registry ({seen}); free space and run the "
                                "command again (nothing partial was recorded)", details={"reason": str(seen)})
        nxt = getattr(seen, "orig", None) or seen.__cause__ or seen.__context__
        if not isinstance(nxt, BaseException):
            break
        seen = nxt
    return None


if __name__ == "__main__":
    sys.exit(main())


def run() -> None:
    """Console-script entry point."""
    sys.exit(main())
