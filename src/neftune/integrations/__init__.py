"""Trainer integrations: :class:`NEFTuneCallback`, :func:`attach`, :func:`patch_transformers`.

Using them needs ``transformers`` (``pip install "neftune[transformers]"``). The names are imported
on first use, so ``neftune.integrations.axolotl`` (an Axolotl plugin) imports even when the
transformers integration cannot, and reports that itself.

Part of the library: may import the rest of it (``neftune.config``, ``activation``, ``compat``)
and the frameworks it integrates with; never ``neftune.finetune``, ``experiments`` or ``cli``.
"""

from importlib import import_module
from typing import Any

__all__ = ["NEFTuneCallback", "add_neftune", "attach", "patch_transformers", "unpatch_transformers"]

_SOURCES = {
    "NEFTuneCallback": ".transformers",
    "add_neftune": ".transformers",
    "attach": ".transformers",
    "patch_transformers": ".patch",
    "unpatch_transformers": ".patch",
}


def __getattr__(name: str) -> Any:
    if name not in _SOURCES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(_SOURCES[name], __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
