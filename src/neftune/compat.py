"""Drop-in replacements for ``transformers.integrations.neftune`` (same signatures).

``activate_neftune`` / ``deactivate_neftune`` use per-sequence scaling (the fix); the
bare ``neftune_post_forward_hook`` cannot see the attention mask, so it scales by the
row length like transformers' hook, but adds noise only in training with autograd on.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from .hooks import NEFTuneHandle, activate
from .noise import add_noise, check_alpha


def neftune_post_forward_hook(module: nn.Module, input: Any, output: torch.Tensor) -> torch.Tensor:
    """Forward hook reading ``module.neftune_noise_alpha``; noise scaled by the row length."""
    if not (module.training and torch.is_grad_enabled()):
        return output
    alpha = check_alpha(getattr(module, "neftune_noise_alpha", None), "module.neftune_noise_alpha")
    return add_noise(output, alpha)


def activate_neftune(model: nn.Module, neftune_noise_alpha: float, accelerator: Any = None) -> NEFTuneHandle:
    """Activate per-sequence NEFTune; returns a handle with ``.remove()`` like a hook handle."""
    if accelerator is not None:
        model = accelerator.unwrap_model(model)
    return activate(model, neftune_noise_alpha)


def deactivate_neftune(model: nn.Module, hook_handle: Any, accelerator: Any = None) -> None:
    """Remove what :func:`activate_neftune` (ours or transformers') attached."""
    if accelerator is not None:
        model = accelerator.unwrap_model(model)
    hook_handle.remove()
    getter = getattr(model, "get_input_embeddings", None)
    embedding = getter() if callable(getter) else None
    if embedding is not None and hasattr(embedding, "neftune_noise_alpha"):
        del embedding.neftune_noise_alpha
