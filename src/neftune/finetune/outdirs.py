"""Output folders: may a folder be created, which files neftune wrote there, and removing only those.

``--overwrite`` must never delete a user's own files (notes, analyses, the data being trained
on), at any depth: callers name the exact files a previous run, evaluation or experiment wrote
(relative paths, see :func:`files_under`), :func:`remove_files` deletes those and the folders
they leave empty, and :func:`remaining` names what was kept.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable
from pathlib import Path

from .configfile import CONFIG_NAME

__all__ = [
    "EVAL_FILES",
    "creation_problem",
    "entries",
    "eval_files",
    "files_under",
    "is_within",
    "remaining",
    "remove_files",
]

#: Every file an evaluation writes into its folder (``eval.json``, written last, marks the folder).
EVAL_FILES = ("eval.json", "generations.json", "alpaca_eval.json", "per_prompt.json", CONFIG_NAME)


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


def files_under(folder: Path, names: Iterable[str] | None = None) -> set[str]:
    """Relative POSIX paths of every file (and symlink) under ``folder``'s entries ``names`` (all: None).

    Symlinked folders are listed as links, never followed.
    """
    folder = Path(folder)
    found: set[str] = set()
    for name in entries(folder) if names is None else names:
        path = folder / name
        if path.is_symlink() or path.is_file():
            found.add(name)
        elif path.is_dir():
            for root, dirs, files in os.walk(path):
                base = Path(root).relative_to(folder)
                links = [d for d in dirs if (Path(root) / d).is_symlink()]
                found.update((base / n).as_posix() for n in [*files, *links])
    return found


def eval_files(folder: Path) -> set[str]:
    """The files of :data:`EVAL_FILES` present in ``folder``, when it holds an evaluation (else none)."""
    if not (folder / "eval.json").is_file():
        return set()
    return {n for n in EVAL_FILES if (folder / n).is_file()}


def remove_files(folder: Path, paths: Iterable[str], protect: Iterable[Path] = ()) -> None:
    """Delete ``folder/path`` for each relative path, then each folder holding one of them if now empty.

    Links are removed, never followed. A path that is or lies inside a ``protect`` path is kept.
    Folders are removed only when empty, so anything not listed stays where it was.
    """
    folder = Path(folder)
    protect = [Path(p) for p in protect]
    parents: set[Path] = set()
    for rel in sorted(set(paths)):
        path = folder / rel
        if not (path.is_symlink() or path.is_file()) or any(is_within(path, p) for p in protect):
            continue
        path.unlink()
        parents.update(p for p in path.parents if p != folder and folder in p.parents)
    for parent in sorted(parents, key=lambda p: len(p.parts), reverse=True):
        with contextlib.suppress(OSError):  # not empty: it holds something that was not listed
            parent.rmdir()


def remaining(folder: Path, names: Iterable[str]) -> list[str]:
    """The files still under ``folder``'s entries ``names``, sorted: what a removal kept."""
    return sorted(
        files_under(folder, [n for n in names if (folder / n).exists() or (folder / n).is_symlink()])
    )
