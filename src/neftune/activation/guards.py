"""Checks that refuse what NEFTune cannot noise correctly, each with a message saying what to do.

Pure checks (no state): an alpha that would overflow the embeddings' dtype, modules and outputs
that are not per-token embeddings, and torch.compile caches that no longer see our hooks.
"""

from __future__ import annotations

import math
import sys
import warnings
from collections.abc import Iterable
from typing import Any

import torch
from torch import nn


def check_overflow(alpha: float, dim: int, dtype: torch.dtype, distribution: str) -> None:
    """Raise ``ValueError`` if ``alpha`` makes one token's noise overflow ``dtype``.

    The largest per-element noise is ``alpha / sqrt(d)`` (a one-token sequence) times the
    largest ``|eps|``: 1 for "uniform" and "symmetric", ~6 for "gaussian" (P(|Z| > 6) ~ 2e-9).
    Refused when that exceeds half the dtype's largest finite value (the embeddings add to it).
    """
    if not dtype.is_floating_point or dim <= 0:
        return
    peak = alpha / math.sqrt(dim) * (6.0 if distribution == "gaussian" else 1.0)
    largest = torch.finfo(dtype).max
    if peak > largest / 2:
        raise ValueError(
            f"alpha={alpha:g} is too large for {str(dtype).removeprefix('torch.')} embeddings of width {dim}: "
            f"a one-token sequence would get noise up to {peak:.3g}, and the largest "
            f"{str(dtype).removeprefix('torch.')} is {largest:.3g} (the embeddings would become inf); "
            "use a smaller alpha (the paper used 5, 10 or 15)"
        )


def compiled_code_exists(modules: list[nn.Module]) -> bool:
    """Whether torch.compile holds compiled code for the forward of any of ``modules``.

    Compiled code does not see forward hooks added or removed after it was compiled
    (``torch._dynamo.config.skip_nnmodule_hook_guards``).
    """
    if "torch._dynamo" not in sys.modules:
        return False  # nothing was ever compiled in this process
    try:
        from torch._C._dynamo.eval_frame import _debug_get_cache_entry_list as cache_entries
    except ImportError:  # pragma: no cover - older torch: assume the worst once dynamo was used
        return True
    codes = {nn.Module._call_impl.__code__}
    for module in modules:
        code = getattr(type(module).forward, "__code__", None)
        if code is not None:
            codes.add(code)
    return any(cache_entries(code) for code in codes)


def refresh_compiled(modules: list[nn.Module], what: str) -> None:
    """After hooks changed on ``modules``: clear torch.compile's caches if they hold stale code."""
    if compiled_code_exists(modules):
        torch.compiler.reset()
        warnings.warn(
            f"NEFTune was {what} on a model that torch.compile had already compiled; compiled code "
            "does not see hooks added or removed later, so neftune cleared torch.compile's caches "
            "(torch.compiler.reset()) and the next call recompiles. Activate NEFTune before "
            "compiling (or before the first compiled call) to avoid the recompilation.",
            stacklevel=3,
        )


def check_embedding_module(module: nn.Module, path: str) -> None:
    """Refuse modules whose output is not per-token embeddings (``nn.EmbeddingBag`` pools them)."""
    if isinstance(module, nn.EmbeddingBag):
        raise TypeError(
            f"{path or type(module).__name__} is an nn.EmbeddingBag: it returns one pooled vector per bag, "
            "not (batch, sequence, dim) token embeddings, so NEFTune's per-token noise does not apply; "
            "pass embedding= the module that returns the token embeddings"
        )


def check_embedding_output(module: nn.Module, output: Any) -> None:
    """Refuse an embedding output that is not floating-point ``(batch, seq, dim)`` or ``(seq, dim)``."""
    if isinstance(output, torch.Tensor) and output.is_floating_point() and output.dim() in (2, 3):
        return
    described = (
        f"a {output.dtype} tensor of shape {tuple(output.shape)}"
        if isinstance(output, torch.Tensor)
        else type(output).__name__
    )
    raise TypeError(
        f"NEFTune: {type(module).__name__} returned {described}, not floating-point (batch, seq, dim) "
        "token embeddings, so no noise can be added; pass embedding= to neftune.activate() to pick "
        "the module that returns the token embeddings"
    )


#: Name of transformers' NEFTune forward hook (``transformers.integrations.neftune``, formerly
#: ``transformers.trainer_utils``) and of neftune's drop-in for it (``neftune.compat``).
_TRANSFORMERS_HOOK_NAME = "neftune_post_forward_hook"


def _has_neftune_forward_hook(module: nn.Module) -> bool:
    """Whether one of ``module``'s registered forward hooks is transformers' NEFTune hook (or the drop-in)."""
    for hook in module._forward_hooks.values():
        fn = getattr(hook, "func", hook)  # functools.partial
        if getattr(fn, "__name__", None) == _TRANSFORMERS_HOOK_NAME:
            return True
    return False


def transformers_hooked(modules: Iterable[nn.Module]) -> nn.Module | None:
    """The first of ``modules`` that transformers' own NEFTune hook is on, or None.

    transformers marks the module it hooks with ``neftune_noise_alpha`` (its alpha) and registers
    ``neftune_post_forward_hook`` on it; a second noise source on the same embedding would add the
    noise twice. Both must be there: a marker left behind after the hook's handle was removed
    without ``deactivate_neftune`` (which deletes the marker) noises nothing.
    """
    return next(
        (
            m
            for m in modules
            if getattr(m, "neftune_noise_alpha", None) is not None and _has_neftune_forward_hook(m)
        ),
        None,
    )
