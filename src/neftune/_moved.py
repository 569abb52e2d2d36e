"""Old import paths of the modules that moved into the layer packages; they work for one release.

``import neftune.training``, ``from neftune.hooks import activate`` or
``neftune.data.formats`` give the module at its new path (the same module object, not a copy)
and warn once per old path with a ``DeprecationWarning`` that names the new one. The old
paths stop working in neftune 0.2. Imports nothing of neftune: the library's lowest layer.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
import warnings
from pathlib import Path
from types import ModuleType

REMOVED_IN = "0.2"

#: Old module path -> new module path; a moved package's submodules follow it.
MOVED: dict[str, str] = {
    **{
        f"neftune.{name}": f"neftune.activation.{name}"
        for name in ("batch_context", "checkpointing", "discovery", "embedding", "guards", "hooks")
    },
    **{
        f"neftune.{name}": f"neftune.finetune.{name}"
        for name in (
            "configfile",
            "data",
            "evaluation",
            "hub",
            "instructions",
            "io",
            "metrics",
            "models",
            "outdirs",
            "progress",
            "provenance",
            "training",
        )
    },
    "neftune.cli_frameworks": "neftune.cli.frameworks",
    "neftune.cli_ifeval": "neftune.cli.ifeval",
    "neftune.cli_options": "neftune.cli.options",
}


def new_path(name: str) -> str | None:
    """The current path of module ``name`` if it moved (``neftune.data.formats`` ->
    ``neftune.finetune.data.formats``), else None."""
    for old, new in MOVED.items():
        if name == old or name.startswith(old + "."):
            return new + name[len(old) :]
    return None


def _stacklevel() -> int:
    """The ``warnings.warn`` stack level, seen from ``create_module``, of the code that wrote the
    import. ``warnings`` itself skips importlib's frozen bootstrap frames; this also steps past
    ``importlib.import_module``."""
    frame, level = sys._getframe(2), 2
    while frame is not None and (
        frame.f_code.co_filename.startswith("<frozen importlib")
        or frame.f_code.co_filename.endswith(str(Path("importlib", "__init__.py")))
    ):
        if not frame.f_code.co_filename.startswith("<frozen importlib"):
            level += 1
        frame = frame.f_back
    return level


class _MovedModules(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Finds an old path and loads it as the module at the new path."""

    def __init__(self) -> None:
        self._specs: dict[str, importlib.machinery.ModuleSpec] = {}

    def find_spec(self, fullname: str, path=None, target=None) -> importlib.machinery.ModuleSpec | None:
        return importlib.machinery.ModuleSpec(fullname, self) if new_path(fullname) else None

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        current = new_path(spec.name)
        warnings.warn(
            f"{spec.name} moved to {current}; import it from there (the old path stops working in "
            f"neftune {REMOVED_IN})",
            DeprecationWarning,
            stacklevel=_stacklevel(),
        )
        module = importlib.import_module(current)
        self._specs[spec.name] = module.__spec__
        return module

    def exec_module(self, module: ModuleType) -> None:
        # importlib has just set the alias's spec on the module (the same object): give its own back
        module.__spec__ = self._specs.pop(module.__spec__.name)


_FINDER = _MovedModules()


def install() -> None:
    """Put the finder first on ``sys.meta_path`` (once)."""
    if _FINDER not in sys.meta_path:
        sys.meta_path.insert(0, _FINDER)
