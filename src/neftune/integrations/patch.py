"""Make ``neftune_noise_alpha`` in ``TrainingArguments`` / TRL configs use per-sequence noise.

    from neftune.integrations import patch_transformers
    with patch_transformers():          # or call it, and unpatch_transformers() later
        trainer = SFTTrainer(..., args=SFTConfig(neftune_noise_alpha=5.0, ...))
        trainer.train()

``transformers.Trainer.train`` calls the module-level names ``activate_neftune`` /
``deactivate_neftune`` of ``transformers.trainer``; they are replaced by
:func:`neftune.activate_neftune` / :func:`neftune.deactivate_neftune`.
"""

from __future__ import annotations

import contextlib
from typing import Any

from .. import compat

_NAMES = ("activate_neftune", "deactivate_neftune")
_saved: dict[str, Any] = {}


def _trainer_module() -> Any:
    import transformers.trainer

    return transformers.trainer


def unpatch_transformers() -> bool:
    """Restore transformers' functions and remove the noise a ``train()`` that raised left active.

    Returns whether a patch was undone.
    """
    compat.remove_opened()
    if not _saved:
        return False
    module = _trainer_module()
    for name, fn in _saved.items():
        setattr(module, name, fn)
    _saved.clear()
    return True


class _Patch(contextlib.AbstractContextManager):
    def __enter__(self) -> _Patch:
        return self

    def __exit__(self, *exc: object) -> None:
        unpatch_transformers()


def patch_transformers() -> contextlib.AbstractContextManager:
    """Patch now; the result is a context manager that unpatches on exit (optional)."""
    module = _trainer_module()
    for name in _NAMES:
        if not hasattr(module, name):
            raise RuntimeError(
                f"transformers.trainer has no {name}; this transformers version is not supported"
            )
    if not _saved:
        for name in _NAMES:
            _saved[name] = getattr(module, name)
            setattr(module, name, getattr(compat, name))
    return _Patch()
