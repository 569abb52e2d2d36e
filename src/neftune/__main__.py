"""``neftune`` / ``python -m neftune``: the command's entry point.

``neftune --version`` answers here, before the command line (typer, rich) and anything heavy
(torch) is imported; everything else goes to :func:`neftune.cli.main`.
"""

from __future__ import annotations

import sys


def version_line() -> str:
    """``neftune 0.1.0``: what ``--version`` prints."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return f"neftune {version('neftune')}"
    except PackageNotFoundError:  # run from a source tree without installing
        return "neftune (not installed)"


def main() -> None:
    if sys.argv[1:] == ["--version"]:
        print(version_line())
        return
    from .cli import main as cli_main

    cli_main()


if __name__ == "__main__":
    main()
