"""``neftune`` / ``python -m neftune``: the command's entry point.

``neftune --version`` answers here, before the command line (typer, rich) and anything heavy
(torch) is imported; everything else goes to :func:`neftune.cli.main`.
"""

from __future__ import annotations

import sys

from ._version import version_line


def main() -> None:
    if sys.argv[1:] == ["--version"]:
        print(version_line())
        return
    from .cli import main as cli_main

    cli_main()


if __name__ == "__main__":
    main()
