"""The console script: answers ``registry --version`` before importing the CLI (typer and its pydantic
cost a fifth of a second), and hands everything else to ``registry.cli.app.main``."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args == ["--version"]:
        from registry.config import package_version

        print(f"registry {package_version()}")
        return 0
    from registry.cli.app import main as cli_main

    return cli_main(args)


def run() -> None:
    sys.exit(main())
