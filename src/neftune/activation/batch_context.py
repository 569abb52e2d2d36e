"""What the embedding hook needs to know about the batch: where each sequence starts and ends.

Forward pre-hooks on the model (and on every module between it and the embedding) hand their
arguments to :meth:`BatchContext.enter`; it keeps the first ``attention_mask``,
``position_ids``, ``cu_seq_lens_q`` and ``decoder_attention_mask`` it sees during the outermost
call, and forgets them when that call returns (:meth:`BatchContext.exit`, also on exceptions).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

# Keyword names under which models receive the tensors that define sequence boundaries.
BATCH_KEYS = {
    "attention_mask": ("attention_mask",),
    "position_ids": ("position_ids",),
    "cu_seqlens": ("cu_seq_lens_q", "cu_seqlens_q", "cu_seqlens"),
    "decoder_attention_mask": ("decoder_attention_mask",),
}


class BatchContext:
    """The sequence-boundary tensors of the forward call in progress.

    ``depth``: how many hooked modules are inside their forward (0 = none: an embedding called
    now is called outside the model). ``tensors`` maps ``attention_mask`` / ``position_ids`` /
    ``cu_seqlens`` / ``decoder_attention_mask`` to what the call received.
    """

    def __init__(self, warn_once: Callable[[str, str], None]) -> None:
        self.depth = 0
        self.tensors: dict[str, torch.Tensor] = {}
        self._warn_once = warn_once
        self._signatures: dict[type, list[str]] = {}

    def arguments(self, module: nn.Module, args: tuple, kwargs: dict) -> dict[str, Any]:
        """The call's arguments by name: keywords, and positionals named from ``forward``'s signature."""
        return {**dict(zip(self.param_names(module), args)), **kwargs} if args else dict(kwargs)

    def enter(self, module: nn.Module, arguments: dict[str, Any]) -> bool:
        """Record a hooked module's call; returns whether it is the outermost one."""
        outermost = self.depth == 0
        if outermost:
            self.tensors = {}
        self.depth += 1
        for key, names in BATCH_KEYS.items():
            if key in self.tensors:
                continue
            for name in names:
                value = arguments.get(name)
                if isinstance(value, torch.Tensor):
                    self.tensors[key] = value
                    break
        return outermost

    def exit(self) -> None:
        self.depth = max(0, self.depth - 1)
        if self.depth == 0:
            self.tensors = {}

    def clear(self) -> None:
        self.depth, self.tensors = 0, {}

    def for_embedding(self, role: str, output: torch.Tensor) -> dict[str, torch.Tensor]:
        """Mask / positions / cu_seqlens for an embedding output of shape ``(B, T, d)`` or ``(T, d)``.

        ``role="decoder"`` (the decoder of an encoder-decoder model) gets only the decoder's own
        mask. A mask may be ``(B, T)`` (0/1 or segment ids) or a block mask ``(B, H, T, T)`` /
        ``(B, T, T)``. Tensors whose shape does not fit the output are dropped, with one warning
        each that says where the lengths come from instead.
        """
        ctx = self.tensors
        if role == "decoder":
            found = (
                {"attention_mask": ctx["decoder_attention_mask"]} if "decoder_attention_mask" in ctx else {}
            )
        else:
            found = {k: ctx[k] for k in ("attention_mask", "position_ids", "cu_seqlens") if k in ctx}
        shape = tuple(output.shape[:-1]) if output.dim() == 3 else (1, output.shape[0])
        kept, dropped = {}, []
        for key, value in found.items():
            if key == "cu_seqlens" or _fits(key, value, shape):
                kept[key] = value
            else:
                dropped.append((key, value))
        for key, value in dropped:
            self._warn_once(
                key,
                f"NEFTune: ignoring {key} of shape {tuple(value.shape)}, which does not match the "
                f"embeddings {shape}; the sequence lengths of those batches come from "
                f"{_source(kept)}",
            )
        return kept

    def param_names(self, module: nn.Module) -> list[str]:
        """Names of ``module.forward``'s positional parameters (cached per type)."""
        names = self._signatures.get(type(module))
        if names is None:
            try:
                params = inspect.signature(module.forward).parameters.values()
                names = [p.name for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
            except (TypeError, ValueError):
                names = []
            self._signatures[type(module)] = names
        return names


def _fits(key: str, value: torch.Tensor, shape: tuple[int, int]) -> bool:
    """Whether a mask or positions tensor describes embeddings of ``shape`` (batch, sequence)."""
    if tuple(value.shape) == shape or (value.dim() == 1 and shape[0] == 1):
        return True
    rows, cols = shape
    return key == "attention_mask" and (
        (value.dim() == 4 and value.shape[0] == rows and tuple(value.shape[2:]) == (cols, cols))
        or tuple(value.shape) == (rows, cols, cols)
    )


def _source(kept: dict[str, torch.Tensor]) -> str:
    """Where the lengths come from, given the tensors kept (for a warning)."""
    names = {
        "cu_seqlens": "cu_seqlens",
        "position_ids": "the position ids",
        "attention_mask": "the attention mask",
    }
    used = [names[k] for k in ("cu_seqlens", "position_ids", "attention_mask") if k in kept]
    return " and ".join(used) if used else "nothing else: the noise is scaled by the row length"
