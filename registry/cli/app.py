"""The ``registry`` command. Only ``main()`` turns exceptions into exit codes."""

from __future__ import annotations

import os
import sys
import traceback

from registry.cli.base import app, emit_json
from registry.errors import RegistryError

# Each module registers its commands on `app`.
from registry.cli import catalog_cmds as _catalog_cmds  # noqa: F401,E402
from registry.cli import db_cmds as _db_cmds  # noqa: F401,E402
from registry.cli import load_cmds as _load_cmds  # noqa: F401,E402
from registry.cli import pull_cmds as _pull_cmds  # noqa: F401,E402
from registry.cli import gc_cmds as _gc_cmds  # noqa: F401,E402
from registry.cli import serve_cmds as _serve_cmds  # noqa: F401,E402
from registry.cli import sign_cmds as _sign_cmds  # noqa: F401,E402


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args or os.environ.get("REGISTRY_DEBUG") == "1"
    args = [a for a in args if a != "--debug"]
    want_json = "--json" in args
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
        if exc.details.get("reported"):
            return exc.exit_code  # the command already printed its report
        if want_json:
            emit_json(exc.to_dict())
        print(f"registry: error: {exc.message}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("registry: interrupted", file=sys.stderr)
        return 130

if __name__ == "__main__":
    sys.exit(main())


def run() -> None:
    """Console-script entry point."""
    sys.exit(main())
