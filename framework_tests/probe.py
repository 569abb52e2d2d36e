"""An independent check of the noise a model's input embeddings received, for the framework tests.

It knows nothing of neftune: a forward hook registered on the input embedding at the model's first
training forward (so after every noise hook the trainer registered) recomputes the clean lookup with
``module.forward`` (which bypasses hooks) and stores, per call, the squared noise norm of every token
beside the tensors the model was called with. :func:`sequence_norms` then cuts each row into sequences
(position ids that restart at 0, or a 2-D mask: 0 = padding, values 1..k = segment ids) and returns one
noise norm per sequence and the noise found on padding.

Usage inside a framework run (a plugin, callback or test harness)::

    probe = NoiseProbe(model)          # before training starts
    ...train...
    probe.dump("noise.json")           # list of {"sequences": [[length, norm], ...], "padding": norm}
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import torch
from torch import nn

__all__ = ["NoiseProbe", "sequence_norms"]


class NoiseProbe:
    """Records per-token squared noise norms of ``model``'s input embeddings in training forwards.

    ``max_calls``: how many noised-eligible forwards to record (training mode, autograd on).
    ``pad_token_id``: tokens with this id that form a whole position-id segment count as padding
    (packers that pad a row's tail with a pseudo-sequence of pad tokens).
    """

    def __init__(self, model: nn.Module, *, max_calls: int = 4, pad_token_id: int | None = None) -> None:
        self.model = model
        self.embedding = model.get_input_embeddings()
        self.max_calls = max_calls
        self.pad_token_id = pad_token_id
        self.calls: list[dict[str, Any]] = []
        self._batch: dict[str, Any] = {}
        self._post_handle = None
        self._pre_handle = model.register_forward_pre_hook(self._pre, with_kwargs=True)

    def _pre(self, module: nn.Module, args: tuple, kwargs: dict) -> None:
        self._batch = {k: kwargs.get(k) for k in ("attention_mask", "position_ids", "labels")}
        if self._post_handle is None:  # registered now, so it runs after every hook the trainer added
            self._post_handle = self.embedding.register_forward_hook(self._post)

    def _post(self, module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
        if len(self.calls) >= self.max_calls or not module.training or not torch.is_grad_enabled():
            return
        ids = inputs[0]
        with torch.no_grad():
            clean = module.forward(ids)
            per_token = (output.detach().float() - clean.float()).pow(2).sum(-1)
        batch = {
            k: (v.detach().cpu() if isinstance(v, torch.Tensor) else None) for k, v in self._batch.items()
        }
        self.calls.append({"per_token": per_token.cpu(), "input_ids": ids.detach().cpu(), **batch})

    def results(self) -> list[dict[str, Any]]:
        return [sequence_norms(call, pad_token_id=self.pad_token_id) for call in self.calls]

    def dump(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.results(), indent=1))

    def remove(self) -> None:
        self._pre_handle.remove()
        if self._post_handle is not None:
            self._post_handle.remove()


def sequence_norms(call: dict[str, Any], *, pad_token_id: int | None = None) -> dict[str, Any]:
    """``{"sequences": [[length, noise_norm], ...], "padding": noise_norm_on_padding}`` of one call.

    Boundaries: position ids restarting at 0 when given, else a 2-D mask's segment ids (a new
    sequence where the nonzero id changes), else one sequence per row. Padding: mask 0, or a whole
    segment of ``pad_token_id`` tokens.
    """
    sq = call["per_token"]
    rows, cols = sq.shape
    mask, pos, ids = call.get("attention_mask"), call.get("position_ids"), call["input_ids"]
    mask2d = mask if isinstance(mask, torch.Tensor) and mask.dim() == 2 else None
    sequences: list[list[float]] = []
    padding = 0.0
    for r in range(rows):
        segment = []
        for t in range(cols):
            starts = t == 0
            if pos is not None:
                starts = starts or int(pos.view(-1, cols)[r, t]) == 0
            elif mask2d is not None and t > 0:
                starts = int(mask2d[r, t]) != int(mask2d[r, t - 1])
            if starts and segment:
                padding += _close(segment, sequences, ids[r], pad_token_id)
                segment = []
            if mask2d is not None and int(mask2d[r, t]) == 0:
                padding += float(sq[r, t])
                continue
            segment.append((t, float(sq[r, t])))
        if segment:
            padding += _close(segment, sequences, ids[r], pad_token_id)
    return {"sequences": sequences, "padding": math.sqrt(padding)}


def _close(
    segment: list[tuple[int, float]], out: list[list[float]], ids: torch.Tensor, pad: int | None
) -> float:
    """Append one sequence's [length, norm]; return its squared norm instead when it is all padding."""
    total = sum(v for _, v in segment)
    if pad is not None and all(int(ids[t]) == pad for t, _ in segment):
        return total
    out.append([len(segment), math.sqrt(total)])
    return 0.0
