"""Drop-in replacements for ``transformers.integrations.neftune`` (same signatures).

``activate_neftune`` / ``deactivate_neftune`` use per-sequence scaling (the fix); the
bare ``neftune_post_forward_hook`` cannot see the attention mask, so it scales by the
row length like transformers' hook, but adds noise only in training with autograd on.
"""

from __future__ import annotations

import weakref
from typing import Any

import torch
from torch import nn

from .activation.hooks import NEFTuneHandle, activate
from .noise import add_noise, check_alpha


def neftune_post_forward_hook(module: nn.Module, input: Any, output: torch.Tensor) -> torch.Tensor:
    """Forward hook reading ``module.neftune_noise_alpha``; noise scaled by the row length."""
    if not (module.training and torch.is_grad_enabled()):
        return output
    alpha = check_alpha(getattr(module, "neftune_noise_alpha", None), "module.neftune_noise_alpha")
    return add_noise(output, alpha)


#: Tag of the handles made here: transformers calls ``activate_neftune`` at the start of every
#: ``train()`` and ``deactivate_neftune`` only when it ends without an exception, so a handle
#: with this tag that is still active at the next call is a leftover, and is replaced.
CREATED_BY = "activate_neftune"
_opened: weakref.WeakSet[NEFTuneHandle] = weakref.WeakSet()


def activate_neftune(model: nn.Module, neftune_noise_alpha: float, accelerator: Any = None) -> NEFTuneHandle:
    """Activate per-sequence NEFTune; returns a handle with ``.remove()`` like a hook handle."""
    if accelerator is not None:
        model = accelerator.unwrap_model(model)
    handle = activate(model, neftune_noise_alpha, created_by=CREATED_BY)
    _opened.add(handle)
    return handle


def remove_opened() -> int:
    """Remove every handle :func:`activate_neftune` made that is still active; returns how many."""
    handles = [h for h in list(_opened) if h.active]
    for handle in handles:
        handle.remove()
    _opened.clear()
    return len(handles)


def deactivate_neftune(model: nn.Module, hook_handle: Any, accelerator: Any = None) -> None:
    """Remove what :func:`activate_neftune` (ours or transformers') attached."""
    if accelerator is not None:
        model = accelerator.unwrap_model(model)
    hook_handle.remove()
    getter = getattr(model, "get_input_embeddings", None)
    embedding = getter() if callable(getter) else None
    if embedding is not None and hasattr(embedding, "neftune_noise_alpha"):
        del embedding.neftune_noise_alpha
