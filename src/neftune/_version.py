"""What ``neftune --version`` prints; imports nothing heavy (read by ``__main__`` and the command line)."""

from __future__ import annotations


def version_line() -> str:
    """``neftune 0.1.0``: the installed distribution's version."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return f"neftune {version('neftune')}"
    except PackageNotFoundError:  # run from a source tree without installing
        return "neftune (not installed)"
