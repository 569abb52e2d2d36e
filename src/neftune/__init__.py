"""neftune: NEFTune (noisy embedding instruction fine-tuning) with per-sequence noise.

import neftune
handle = neftune.activate(model, alpha=5.0)   # train as usual
neftune.deactivate(handle)

This package is the library: the noise (``noise``, ``config``, ``schedules``, ``streams``), the
machinery that puts it into a model (``activation``), its kernels (``kernels``) and the trainer
and framework integrations (``integrations``); ``compat`` is transformers' function names. They
import only each other, torch and the frameworks they integrate with. Above them, each importing
only the layers below it (``tests/test_layers.py`` enforces it; ``docs/architecture.md`` maps it):

- ``neftune.finetune``: the fine-tuning application (training, evaluation, data, checkers);
- ``neftune.experiments``: compare / sweep: arms, statistics, reports;
- ``neftune.cli``: the ``neftune`` command, one module per command.

Modules that moved into those packages keep their old import paths (``neftune.training``,
``neftune.hooks``, ...) for one release, with a ``DeprecationWarning`` (:mod:`neftune._moved`).

The names below load on first use (PEP 562), so that ``import neftune`` and the ``neftune``
command's ``--version`` do not import torch; ``from neftune import activate`` works as usual.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from . import _moved

if TYPE_CHECKING:
    from .activation.discovery import EmbeddingNotFoundError, find_input_embedding, unwrap_model
    from .activation.hooks import (
        NEFTuneEmbedding,
        NEFTuneHandle,
        activate,
        deactivate,
        get_handle,
        is_active,
        noisy_embeddings,
    )
    from .compat import activate_neftune, deactivate_neftune, neftune_post_forward_hook
    from .config import NEFTuneConfig
    from .noise import DISTRIBUTIONS, SCALINGS, add_noise, expected_noise_norm, segment_lengths, token_scales
    from .schedules import resolve_schedule

__version__ = "0.1.0"

_moved.install()

#: Public name -> the submodule that defines it.
_EXPORTS = {
    **dict.fromkeys(("activate_neftune", "deactivate_neftune", "neftune_post_forward_hook"), "compat"),
    **dict.fromkeys(
        ("EmbeddingNotFoundError", "find_input_embedding", "unwrap_model"), "activation.discovery"
    ),
    **dict.fromkeys(
        (
            "NEFTuneEmbedding",
            "NEFTuneHandle",
            "activate",
            "deactivate",
            "get_handle",
            "is_active",
            "noisy_embeddings",
        ),
        "activation.hooks",
    ),
    "NEFTuneConfig": "config",
    **dict.fromkeys(
        ("DISTRIBUTIONS", "SCALINGS", "add_noise", "expected_noise_norm", "segment_lengths", "token_scales"),
        "noise",
    ),
    "resolve_schedule": "schedules",
}

__all__ = [
    "DISTRIBUTIONS",
    "SCALINGS",
    "EmbeddingNotFoundError",
    "NEFTuneConfig",
    "NEFTuneEmbedding",
    "NEFTuneHandle",
    "__version__",
    "activate",
    "activate_neftune",
    "add_noise",
    "deactivate",
    "deactivate_neftune",
    "expected_noise_norm",
    "find_input_embedding",
    "get_handle",
    "is_active",
    "neftune_post_forward_hook",
    "noisy_embeddings",
    "resolve_schedule",
    "segment_lengths",
    "token_scales",
    "unwrap_model",
]


def __getattr__(name: str) -> Any:
    """Load a public name (or a submodule, e.g. ``neftune.noise``) on first access."""
    module = _EXPORTS.get(name)
    if module is not None:
        value = getattr(importlib.import_module(f".{module}", __name__), name)
        globals()[name] = value  # later lookups skip this function
        return value
    try:
        return importlib.import_module(f".{name}", __name__)
    except ModuleNotFoundError as exc:
        if exc.name != f"{__name__}.{name}":
            raise
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})
