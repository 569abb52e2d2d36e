"""Output folders: may a folder be created, and removing only what neftune wrote there.

``--overwrite`` must never delete a user's own files (notes, the data being trained on):
callers pass the exact entries a previous run or experiment wrote, and paths to protect.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterable
from pathlib import Path

__all__ = ["creation_problem", "entries", "is_within", "remove_entries"]


def creation_problem(path: Path) -> str | None:
    """None when ``path`` is a folder or could be created as one; else why not (for a message)."""
    if path.exists():
        return None if path.is_dir() else f"{path} is a file, not a folder"
    parent = path.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        return f"{parent} is a file, not a folder"
    if not os.access(parent, os.W_OK | os.X_OK):
        return f"no permission to create folders in {parent}"
    return None


def entries(folder: Path) -> set[str]:
    """Names of the files and folders directly inside ``folder`` (empty when it does not exist)."""
    return {p.name for p in folder.iterdir()} if folder.is_dir() else set()


def is_within(path: Path, folder: Path) -> bool:
    """Whether ``path`` is ``folder`` or lies inside it (both resolved)."""
    path, folder = path.resolve(), folder.resolve()
    return path == folder or folder in path.parents


def remove_entries(folder: Path, names: Iterable[str], protect: Iterable[Path] = ()) -> list[str]:
    """Delete ``folder/name`` for each name, except entries that are or hold a protected path.

    Returns the names kept because of ``protect``.
    """
    protect = [Path(p) for p in protect]
    kept = []
    for name in sorted(set(names)):
        path = folder / name
        if any(is_within(p, path) for p in protect):
            kept.append(name)
            continue
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        elif path.exists() or path.is_symlink():
            path.unlink()
    return kept
